"""Hostile and malformed FHIR never crashes a sync and never yields a wrong fact.

Hypothesis writes NDJSON files full of broken resources (wrong types, huge
strings, deep nesting, invalid dates and units, unknown resource types,
duplicate ids, non-JSON lines) next to valid ones; one real sync runs over
them.  Every line must end up accounted for: a fact, an issue, or an
explicitly ignored code, and every fact must be within its concept's
plausible range and unit.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter import config as config_mod
from adapter import paths
from adapter.mapping import catalog
from adapter.mapping.facts import Fact
from adapter.store import db, models
from adapter.sync import SiteSetup, sync_site

from support import write_test_secret

MRN_SYSTEM = "urn:test:mrn"
CATALOG = catalog.load_catalog(paths.default_mappings_dir(), "hostile")

junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(string.printable, max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
dates = st.sampled_from(
    ["2025-03-01T10:00:00+08:00", "2025-03-01", "2025-03", "2025-13-45", "yesterday", "", 20250301, None]
)
units = st.sampled_from(["mg/dL", "umol/L", "μmol/L", "%", "K/uL", "", "mg/dl/kg", "10^9/L", None, 7])
codes = st.sampled_from(["2160-0", "6690-2", "777-3", "59408-5", "89247-1", "0000-0", "", None])
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**30), 10**30), st.text(max_size=20)
)


@st.composite
def observation(draw: st.DrawFn, index: int) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": draw(st.sampled_from([f"o{index}", "dup", f"o{index}"])),
        "status": draw(st.sampled_from(["final", "preliminary", "entered-in-error", "bogus", None])),
        "code": {"coding": [{"system": "http://loinc.org", "code": draw(codes)}]},
        "subject": {"reference": draw(st.sampled_from(["Patient/p1", "Patient/zz", "", None]))},
        "effectiveDateTime": draw(dates),
        "valueQuantity": {"value": draw(values), "unit": draw(units)},
    }
    if draw(st.booleans()):
        resource[draw(st.sampled_from(["note", "valueQuantity", "code", "component"]))] = draw(junk)
    if draw(st.booleans()):
        resource["note"] = [{"text": "x" * draw(st.integers(0, 100_000))}]
    return {k: v for k, v in resource.items() if v is not None}


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for _ in range(depth):
        node = {"extension": [{"url": "x", "valueString": "y", "extension": [node]}]}
    return node


def write_site(folder: Path, observations: list[dict[str, Any]], extra_lines: list[bytes]) -> None:
    folder.mkdir(parents=True)
    patient = {"resourceType": "Patient", "id": "p1", "identifier": [{"system": MRN_SYSTEM, "value": "M1"}]}
    (folder / "Patient.ndjson").write_bytes(orjson.dumps(patient) + b"\n")
    body = b"".join(orjson.dumps(o) + b"\n" for o in observations)
    (folder / "Observation.ndjson").write_bytes(body + b"".join(line + b"\n" for line in extra_lines))
    (folder / "roster.csv").write_text(
        f"identifier_system,identifier_value,subject_id,enrolment_date\n{MRN_SYSTEM},M1,S-1,2025-03-10\n"
    )


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(data=st.data())
def test_hostile_observations_become_issues_never_crashes(tmp_path_factory: Any, data: st.DataObject) -> None:
    tmp = tmp_path_factory.mktemp("hostile")
    observations = [data.draw(observation(i)) for i in range(30)]
    observations.append({**observations[0], **nested(60)})  # deep nesting
    extra = [
        b"{not json",
        b"[1,2,3]",
        b'{"resourceType":"Banana","id":"b1"}',
        b'{"resourceType":"Observation"}',
    ]
    write_site(tmp / "site", _jsonable(observations), extra)
    write_test_secret(tmp / "key")
    config = config_mod.config_from_dict(
        {
            "store": {"url": f"sqlite:///{tmp / 'state.db'}"},
            "privacy": {"hmac_key_file": str(tmp / "key")},
            "sites": [
                {
                    "id": "hostile",
                    "timezone": "Asia/Shanghai",
                    "roster": str(tmp / "site" / "roster.csv"),
                    "source": {"kind": "ndjson", "path": str(tmp / "site")},
                }
            ],
            "repository": {"kind": "file", "path": str(tmp / "repo")},
        },
        base_dir=tmp,
    )
    sessions = db.open_store(config.store.url)
    summary = sync_site(SiteSetup.load(config, config.sites[0]), sessions)
    assert summary.resources_read == len(observations) + len(extra) + 1

    with sessions() as session:
        rows = session.scalars(sa.select(models.SourceResource)).all()
        sources = set(session.scalars(sa.select(models.IssueSource.source)))
        fact_rows = session.scalars(sa.select(models.FactRow)).all()
    distinct_ids = {o["id"] for o in observations if isinstance(o.get("id"), str)}
    assert {r.resource_id for r in rows} == distinct_ids
    for row in rows:
        ref = f"{row.resource_type}/{row.resource_id}"
        assert row.outcome in ("mapped", "issue", "ignored", "withdrawn", "outside")
        if row.outcome == "issue":
            assert ref in sources, ref
        if row.outcome == "outside":  # counted in coverage under its standard code
            assert row.code and row.code.split("|")[0] in CATALOG.standard_systems, ref
    assert sum(1 for s in sources if s.startswith("file:")) == len(extra)
    for row in fact_rows:
        fact = Fact.model_validate_json(row.payload)
        spec = CATALOG.concepts[fact.concept].spec
        assert fact.unit == spec.unit
        low, high = spec.plausible or (float("-inf"), float("inf"))
        assert fact.value is not None and low <= fact.value <= high


def _jsonable(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace what JSON cannot carry (NaN, infinities, huge ints) by strings."""

    def fix(value: Any) -> Any:
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            return str(value)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63 - 1:
            return str(value)
        if isinstance(value, dict):
            return {str(k): fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    return [fix(item) for item in items]


def test_a_50_mb_value_becomes_an_issue_without_its_content(tmp_path: Path) -> None:
    """Issue 14 §6: one 50 MB valueString once made the console unusable; now it is never read whole.

    The line is over ``max_resource_bytes`` (default 1 MiB): an ``invalid_resource``
    issue names the file, the line and the size; nothing of the value reaches
    the state database; the rest of the file maps as usual.
    """
    marker = "hostile-content-marker-"
    good = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-03-01T10:00:00+08:00",
        "valueQuantity": {"value": 1.1, "unit": "mg/dL"},
    }
    huge = {**good, "id": "o2", "valueString": marker + "x" * (50 << 20)}
    huge.pop("valueQuantity")
    write_site(tmp_path / "site", [good, huge, {**good, "id": "o3"}], [])
    write_test_secret(tmp_path / "key")
    config = config_mod.config_from_dict(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
            "privacy": {"hmac_key_file": str(tmp_path / "key")},
            "sites": [
                {
                    "id": "hostile",
                    "timezone": "Asia/Shanghai",
                    "roster": str(tmp_path / "site" / "roster.csv"),
                    "source": {"kind": "ndjson", "path": str(tmp_path / "site")},
                }
            ],
            "repository": {"kind": "file", "path": str(tmp_path / "repo")},
        },
        base_dir=tmp_path,
    )
    sessions = db.open_store(config.store.url)
    summary = sync_site(SiteSetup.load(config, config.sites[0]), sessions)
    assert summary.invalid == 1
    with sessions() as session:
        issue = session.get(models.IssueRow, "hostile|invalid_resource|file:Observation.ndjson:2")
        assert issue is not None and issue.status == "open"
        assert "Observation.ndjson:2" in issue.detail and "max_resource_bytes" in issue.detail
        assert f"{len(orjson.dumps(huge)):,} bytes" in issue.detail
        assert marker not in issue.detail
        stored = {row.resource_id: row.raw for row in session.scalars(sa.select(models.SourceResource))}
    assert set(stored) == {"o1", "o3"}
    assert all(marker not in raw for raw in stored.values())
    assert (tmp_path / "state.db").stat().st_size < 5 << 20
