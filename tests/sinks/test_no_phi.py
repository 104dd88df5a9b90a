"""Nothing that identifies a patient leaves through any sink: every request of the demo, scanned.

The file sink's output is scanned in test_demo_end_to_end.py; here the
requests the http, fhir and redcap sinks would send for every outbox item
of the demo run (upserts and retractions) are scanned for the demo
patients' MRNs and other identifiers, names and birth dates.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import sqlalchemy as sa

from adapter import config as config_mod
from adapter import paths
from adapter.delivery import outbox
from adapter.service import job
from adapter.sinks import settings
from adapter.sinks.fhir import FhirSink
from adapter.sinks.http import HttpSink
from adapter.sinks.redcap import RedcapSink
from adapter.store import db, models

from support import phi_strings


def site_references() -> set[str]:
    """``Observation/<id>`` and the like: the site's resource references, which leave only as hashes."""
    refs = set()
    for path in paths.demo_data_dir().glob("*/*.ndjson"):
        for line in path.read_bytes().splitlines():
            try:
                resource = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # the demo's planted broken line
            if isinstance(resource, dict) and resource.get("id"):
                refs.add(f"{resource['resourceType']}/{resource['id']}")
    return refs


def redcap_map() -> dict[str, Any]:
    """Map every field of every record type, so everything a record has is exported."""
    return {
        "EligibilityAssessment": {"fields": {"overall": "o", "anchor_date": "a", "criteria.lvef.date": "d"}},
        "TreatmentCycle": {
            "instrument": "c",
            "instance": "{number}",
            "fields": {"start": "s", "evidence": "e"},
        },
        "StemCellCollection": {"fields": {"dates": "d2", "evidence": "e2"}},
        "Transplant": {"fields": {"day0": "t", "evidence": "e3"}},
        "Reconstitution": {"fields": {"date": "r", "evidence": "e4"}},
        "MrdResult": {"fields": {"date": "m", "value": "v", "evidence": "e5"}},
    }


def test_no_phi_in_any_sinks_requests(demo_run: tuple[config_mod.Config, job.JobResult]) -> None:
    config, _ = demo_run
    with db.open_store(config.store.url)() as session:
        items = session.scalars(sa.select(models.OutboxItem).order_by(models.OutboxItem.id)).all()
        batch = outbox.deliveries(session, items)
    assert len(batch) > 100
    sinks = [
        HttpSink(settings.HttpRepository(kind="http", url="https://trials.example.org/api")),
        FhirSink(settings.FhirRepository(kind="fhir", url="https://repo.example.org/fhir")),
        RedcapSink(
            settings.RedcapRepository.model_validate(
                {
                    "kind": "redcap",
                    "url": "https://r.example.org/api/",
                    "token_env": "T",
                    "records": redcap_map(),
                }
            )
        ),
    ]
    phi = phi_strings()
    source_refs = site_references()
    assert len(phi) > 10 and len(source_refs) > 100
    for sink in sinks:
        plans = sink.preview(batch)
        assert plans and all(p.method != "NONE" for p in plans), sink.description
        outgoing = orjson.dumps([dataclasses.asdict(p) for p in plans], default=str)
        for text in phi:
            assert text.encode() not in outgoing, f"PHI in a request of {sink.description}"
        for ref in source_refs:
            assert ref.encode() not in outgoing, f"a source reference in a request of {sink.description}"
