"""The Provenance of a record: who made it, from which source resources, under which catalog.

The site's resources stay at the site; a Provenance names them only by
their keyed hashes, so a reader can check that two records came from the
same source without learning what it was.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from adapter import __version__
from adapter.sinks.fhir_resources.ids import provenance_id
from adapter.sinks.fhir_resources.systems import DATA_OPERATION, PARTICIPANT_TYPE, Systems


def provenance(
    record: dict[str, Any],
    target_url: str,
    systems: Systems,
    recorded: dt.datetime,
    *,
    retracted: bool = False,
) -> dict[str, Any]:
    """Who made the record from what: source hashes as entities, the catalog version as policy.

    https://hl7.org/fhir/R4/provenance.html: ``entity.what`` holds a
    Reference by identifier only (the keyed hash); the site's resources stay
    at the site.  ``activity`` is v3 DataOperation UPDATE, or NULLIFY for a
    retraction.
    """
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": provenance_id(record["record_id"]),
        "target": [{"reference": target_url}],
        "recorded": recorded.astimezone(dt.UTC).isoformat(timespec="milliseconds"),
        "policy": [systems.catalog(str(record.get("catalog_version", "unknown")))],
        "activity": {"coding": [{"system": DATA_OPERATION, "code": "NULLIFY" if retracted else "UPDATE"}]},
        "agent": [
            {
                "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "assembler"}]},
                "who": {
                    "identifier": {"system": systems.site, "value": str(record.get("site", "unknown"))},
                    "display": f"trial-adapter {__version__}",
                },
            }
        ],
    }
    entities = [
        {"role": "source", "what": {"identifier": {"system": systems.source_hash, "value": source}}}
        for source in sorted(set(_evidence(record)))
    ]
    if entities:
        resource["entity"] = entities
    return resource


def _evidence(record: dict[str, Any]) -> list[str]:
    found = list(record.get("evidence") or ())
    for criterion in record.get("criteria") or ():
        found += criterion.get("evidence") or ()
    return [str(h) for h in found]
