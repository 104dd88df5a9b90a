"""A site whose administrations name the drug by a Medication reference delivers the same records.

Against a real server (sekmet on 127.0.0.1): the demo site is loaded with
every administration's code moved into a Medication resource it references,
as many EHRs send them.  The REST sync must resolve each reference and
deliver exactly what the NDJSON folder delivers for the coded originals; a
reference to a Medication the server does not have becomes an issue naming
it, not a silent gap.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from adapter import paths
from adapter.service import job
from adapter.store import db, models

from fhirserver import FhirServerFactory
from fhirtesting import server_config
from golden import repository_records

Records = dict[str, dict[str, list[dict[str, Any]]]]
SITE = "demo-north"


def by_reference(administrations: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The administrations naming a Medication (one per distinct code) instead of carrying the code."""
    medications: dict[str, dict[str, Any]] = {}
    changed = []
    for admin in administrations:
        codeable = admin.get("medicationCodeableConcept")
        if codeable is None:
            changed.append(admin)
            continue
        ident = "med-" + hashlib.sha256(json.dumps(codeable, sort_keys=True).encode()).hexdigest()[:12]
        medications[ident] = {"resourceType": "Medication", "id": ident, "code": codeable}
        moved = {k: v for k, v in admin.items() if k != "medicationCodeableConcept"}
        moved["medicationReference"] = {"reference": f"Medication/{ident}"}
        changed.append(moved)
    return changed, list(medications.values())


def test_referenced_medications_map_like_coded_ones(
    fhir_server_factory: FhirServerFactory, ndjson_records: Records, tmp_path: Path
) -> None:
    server = fhir_server_factory()
    folder = paths.demo_data_dir() / SITE
    server.load_ndjson(folder, types=("Patient", "Observation", "Procedure"))
    lines = (folder / "MedicationAdministration.ndjson").read_text(encoding="utf-8").splitlines()
    administrations = list({r["id"]: r for r in map(json.loads, lines)}.values())
    changed, medications = by_reference(administrations)
    assert medications and sum("medicationReference" in a for a in changed) > 20
    lost = dict(changed[0], id="lost-med-admin", medicationReference={"reference": "Medication/not-there"})
    server.put_resources([*medications, *changed, lost])

    config = server_config(tmp_path, server.base_url, (SITE,), page_size=50)
    job.run_once(config, config.sites)

    assert repository_records(config) == ndjson_records[SITE]
    with db.open_store(config.store.url)() as session:
        details = session.scalars(
            sa.select(models.IssueRow.detail).where(models.IssueRow.detail.contains("lost-med-admin"))
        ).all()
    assert len(details) == 1 and "'Medication/not-there'" in details[0]
