"""Date-times sent without an offset are read in the site's timezone, not refused.

``adapter/fhir/validation/lenient.py`` reads them so, whichever validation mode.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pydantic
import pytest

from adapter import paths
from adapter.fhir import validation
from adapter.fhir.validation import lenient
from adapter.mapping import catalog, engine

SHANGHAI = ZoneInfo("Asia/Shanghai")
CTX = engine.SiteContext(
    site="demo-east",
    timezone=SHANGHAI,
    catalog=catalog.load_catalog(paths.default_mappings_dir(), "demo-east"),
    subjects={"Patient/p1": "S-001"},
)


def obs(**fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 1.2, "unit": "mg/dL"},
        **fields,
    }


def admin(**fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "id": "m1",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "L01XC19"}]},
        "subject": {"reference": "Patient/p1"},
        "dosage": {"dose": {"value": 28, "unit": "ug"}},
        **fields,
    }


MODES: list[validation.Mode] = ["lean", "r4b"]


def mapped(raw: dict[str, Any], mode: validation.Mode) -> engine.MappingResult:
    return engine.map_resource(validation.validate(raw["resourceType"], raw, mode, SHANGHAI), "v:1", CTX)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "text", ["2025-03-01T23:30:00", "2025-03-01T23:30", "2025-03-01 23:30:00", "2025-03-01T23:30:00.123"]
)
def test_an_offsetless_result_time_is_the_sites_local_time(mode: validation.Mode, text: str) -> None:
    raw = obs(effectiveDateTime=text)
    sent = copy.deepcopy(raw)
    (fact,) = mapped(raw, mode).facts
    assert fact.effective_start is not None
    assert fact.effective_start.utcoffset() == dt.timedelta(hours=8)
    assert fact.local_date == dt.date(2025, 3, 1)
    assert raw == sent  # the source resource is kept as the site sent it


@pytest.mark.parametrize("mode", MODES)
def test_an_offsetless_infusion_period_is_read_in_site_time(mode: validation.Mode) -> None:
    raw = admin(effectivePeriod={"start": "2025-03-01T08:00:00", "end": "2025-03-03 08:00"})
    (fact,) = mapped(raw, mode).facts
    assert fact.local_end_date == dt.date(2025, 3, 3)


@pytest.mark.parametrize("mode", MODES)
def test_other_errors_are_reported_whole_even_beside_an_offsetless_time(mode: validation.Mode) -> None:
    raw = obs(effectiveDateTime="2025-03-01T10:00:00", valueQuantity={"value": "lots", "unit": "mg/dL"})
    with pytest.raises(pydantic.ValidationError) as caught:
        mapped(raw, mode)
    locations = {e["loc"][0] for e in caught.value.errors()}
    assert {"valueQuantity", "effectiveDateTime"} <= locations


@pytest.mark.parametrize("text", ["2025-03-01T25:00:00", "2025-13-01T10:00", "01/03/2025 10:00"])
def test_an_impossible_time_stays_invalid(text: str) -> None:
    with pytest.raises((pydantic.ValidationError, ValueError)):
        mapped(obs(effectiveDateTime=text), "lean")


def test_with_offset_uses_the_zone_rules_of_that_day() -> None:
    new_york = ZoneInfo("America/New_York")
    assert lenient.with_offset("2025-01-15T09:00", new_york) == "2025-01-15T09:00:00-05:00"
    assert lenient.with_offset("2025-07-15T09:00", new_york) == "2025-07-15T09:00:00-04:00"
