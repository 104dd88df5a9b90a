"""A site's ordinary labs and vitals outside the protocol: no issue each, a coverage line each.

A US Core feed sends sodium, lipids, HbA1c, heart rate … by the thousand.
The catalog knows these are standard codes; not being a protocol concept is
not a problem anyone has to decide (issue 17).  Codes of a site-local system
still raise an issue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from adapter import config as config_mod
from adapter.mapping import catalog
from adapter.reconciliation import coverage
from adapter.service import job
from adapter.store import db
from adapter.web import site_health

from golden import issue_list
from support import demo_sandbox

LOINC = "http://loinc.org"
NORTH_LOCAL = "http://hospital-north.example/fhir/lab-codes"

#: (code, display, unit, value): ordinary labs and vitals a US Core feed sends.
ORDINARY = [
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 139),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 4.1),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 182),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 5.6),
    ("8867-4", "Heart rate", "/min", 72),
    ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 24.1),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 13.2),
]


def _observation(
    index: int, subject: str, system: str, code: str, display: str, unit: str, value: float
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"uscore-{index}",
        "meta": {"versionId": "1", "lastUpdated": "2025-02-08T10:00:00Z"},
        "status": "final",
        "code": {"coding": [{"system": system, "code": code, "display": display}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2025-02-08T09:00:00-06:00",
        "valueQuantity": {"value": value, "unit": unit},
    }


@pytest.fixture
def with_ordinary_labs(tmp_path: Path) -> config_mod.Config:
    """The demo north site, plus two of each ordinary lab and one site-local code for a roster patient."""
    config = demo_sandbox(tmp_path)
    folder = config.site("demo-north").source.path  # type: ignore[union-attr]  # an NDJSON folder
    observations = folder / "Observation.ndjson"
    subject = orjson.loads(observations.read_text().splitlines()[0])["subject"]["reference"]
    extra = [
        _observation(n * 10 + copy, subject, LOINC, *row)
        for n, row in enumerate(ORDINARY)
        for copy in range(2)
    ]
    extra.append(_observation(999, subject, NORTH_LOCAL, "NA", "Sodium", "mmol/L", 139))
    with observations.open("ab") as out:
        for resource in extra:
            out.write(orjson.dumps(resource) + b"\n")
    return config


def test_ordinary_standard_codes_raise_no_issue_and_each_gets_a_coverage_line(
    with_ordinary_labs: config_mod.Config,
) -> None:
    job.run_once(with_ordinary_labs, with_ordinary_labs.sites)
    open_issues = [i for i in issue_list(with_ordinary_labs) if i["status"] == "open"]
    for code, *_ in ORDINARY:
        assert not [i for i in open_issues if code in i["key"]], code
    assert [i["kind"] for i in open_issues if NORTH_LOCAL in i["key"]] == ["unknown_code"]

    with db.open_store(with_ordinary_labs.store.url)() as session:
        cover = coverage.site_coverage(session, "demo-north")
    lines = {code: (display, count) for _type, code, display, count in cover.outside_codes}
    assert lines == {f"{LOINC}|{code}": (display, 2) for code, display, _unit, _value in ORDINARY}
    assert cover.by_type["Observation"].outside == 2 * len(ORDINARY)
    assert "outside_codes" in orjson.loads(coverage.as_json(cover))
    observations = cover.by_type["Observation"]
    assert observations.considered == observations.total - observations.ignored - 2 * len(ORDINARY) - (
        observations.not_counted
    ), "outside codes do not lower the mapped share"
    with db.open_store(with_ordinary_labs.store.url)() as session:
        health = site_health.site_health(session, "demo-north")
    assert health.coverage.outside_codes == cover.outside_codes  # the console's site page lists them


def test_the_synonym_table_is_part_of_the_catalog_version(tmp_path: Path) -> None:
    config = demo_sandbox(tmp_path, own_mappings=True)
    folder = config.study.mappings
    before = catalog.load_catalog(folder).version
    synonyms = folder / catalog.SYNONYMS_FILE
    synonyms.write_text(synonyms.read_text() + "\n# a reviewed change\n")
    assert catalog.load_catalog(folder).version != before
