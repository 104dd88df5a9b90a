"""Results under a local lab code the catalog does not know, added to a copy of a demo site's export.

The demo's only unknown local code is sodium (``lis|0099``), which names no
protocol concept.  Tests of mapping suggestions add one that does, the way
a hospital's LIS sends it: a local code, a display in its own words, a unit
and values.  (Imported as ``from local_results import ...``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson

LIS = "http://hospital-east.example/fhir/lis"
UCUM = "http://unitsofmeasure.org"
PATIENTS = ("Patient/pe-1483ff0672d1", "Patient/pe-0a6208d2e86c")  # on demo-east's roster
# An ALT under a local code: "GPT" (glutamic-pyruvic transaminase) is the old
# name many LIS still print; 谷丙转氨酶 is the everyday Chinese one.
GPT_CODE = "0082"
GPT_KEY = f"demo-east|unknown_code|code:{LIS}|{GPT_CODE}"
SODIUM_KEY = f"demo-east|unknown_code|code:{LIS}|0099"


def add_results(
    site_folder: Path,
    code: str,
    display: str,
    values: Sequence[tuple[float, str | None]],
    *,
    text: str | None = None,
) -> list[str]:
    """Append one final result per ``(value, unit)`` under ``LIS|code``; their references."""
    refs = []
    with (site_folder / "Observation.ndjson").open("ab") as out:
        for number, (value, unit) in enumerate(values):
            resource_id = f"obs-{code.lower()}-{number}"
            quantity: dict[str, object] = {"value": value}
            if unit is not None:
                quantity |= {"unit": unit, "system": UCUM, "code": unit}
            resource = {
                "resourceType": "Observation",
                "id": resource_id,
                "meta": {"versionId": "1", "lastUpdated": "2025-02-01T04:00:00Z"},
                "status": "final",
                "code": {
                    "coding": [{"system": LIS, "code": code, "display": display}],
                    "text": text or display,
                },
                "subject": {"reference": PATIENTS[number % len(PATIENTS)]},
                "effectiveDateTime": f"2025-02-{number % 28 + 1:02d}T10:00:00+08:00",
                "valueQuantity": quantity,
            }
            out.write(orjson.dumps(resource) + b"\n")
            refs.append(f"Observation/{resource_id}")
    return refs


def add_gpt(site_folder: Path) -> list[str]:
    """Four ALT results under the local code ``GPT_CODE``, in U/L."""
    return add_results(site_folder, GPT_CODE, "GPT", [(23, "U/L"), (41, "U/L"), (180, "U/L"), (35, "U/L")])
