"""An O2 component the engine cannot read is kept as charted, never dropped.

Under a site practice that reads SpO2 *without* an oxygen record as room air
(``spo2_without_oxygen_record = "room_air"``), a dropped flow component would
turn "oxygen was charted, unreadably" into "nothing charted": room air.
"""

from __future__ import annotations

from typing import Any

import pytest
from mapping.test_engine import LOINC, obs, qty, run

from adapter import paths
from adapter.mapping.observations import UNREADABLE
from adapter.protocol import eligibility, rules

FLOW = {"coding": [{"system": LOINC, "code": "3151-8"}]}
RULES = rules.load_rules(paths.default_mappings_dir()).eligibility


@pytest.mark.parametrize(
    "component",
    [
        {"code": FLOW, "valueQuantity": {"value": 2, "unit": "furlongs"}},
        {
            "code": FLOW,
            "valueQuantity": {
                "value": 2,
                "unit": "mg/dL",
                "system": "http://unitsofmeasure.org",
                "code": "mg/dL",
            },
        },
        {"code": FLOW, "valueString": "2 L nasal cannula"},
        {"code": FLOW, "valueCodeableConcept": {"text": "room air"}},
        {"code": FLOW, "dataAbsentReason": {"text": "not charted"}},
    ],
)
def test_an_unreadable_oxygen_component_is_kept_and_is_not_room_air(component: dict[str, Any]) -> None:
    raw = obs("59408-5", valueQuantity=qty(97, "%", "%"), component=[component])
    (fact,) = run(raw).facts
    assert fact.attributes["oxygen_flow"] == UNREADABLE
    use, _refs = eligibility.oxygen_use(fact, [], [], RULES.room_air)
    assert use is not eligibility.OxygenUse.NOT_RECORDED
    assert use is not eligibility.OxygenUse.ROOM_AIR


def test_a_readable_oxygen_component_still_decides() -> None:
    component = {"code": FLOW, "valueQuantity": {"value": 0, "unit": "L/min"}}
    (fact,) = run(obs("59408-5", valueQuantity=qty(97, "%", "%"), component=[component])).facts
    assert fact.attributes["oxygen_flow"] == "0"
    assert eligibility.oxygen_use(fact, [], [], RULES.room_air)[0] is eligibility.OxygenUse.ROOM_AIR
