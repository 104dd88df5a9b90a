"""A site for CLI output tests: demo-east plus results whose text looks like rich markup or is long.

Hospital data may hold anything: a display such as ``[bold]K[/bold]``, a
local code longer than a terminal column.  The CLI must print both as they
are, so tests sync this site and read what each command prints.
(Imported as ``from cli_site import ...`` by the tests of this folder.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson

from adapter import paths

from support import write_test_secret

LIS = "http://hospital-east.example/fhir/lis"
LONG_CODE = "0099-LONG-LOCAL-CODE-WITH-MANY-PARTS"
MARKUP_CODE = "K-[codes]"
# Under 80 characters: discover keeps that much of a display.
MARKUP_DISPLAY = "[bold]K[/bold] in [codes] of [[sites]] [link=https://evil.example]x[/link]"
PATIENT = "Patient/pe-1483ff0672d1"  # on demo-east's roster


def _observation(resource_id: str, code: str, display: str) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "meta": {"versionId": "1", "lastUpdated": "2025-02-01T04:00:00Z"},
        "status": "final",
        "code": {"coding": [{"system": LIS, "code": code, "display": display}], "text": display},
        "subject": {"reference": PATIENT},
        "effectiveDateTime": "2025-02-01T10:00:00+08:00",
        "valueQuantity": {"value": 4.1, "unit": "mmol/L", "system": "http://unitsofmeasure.org"},
    }


def write_site(tmp_path: Path, repository: str = '[repository]\nkind = "file"\npath = "repo"\n') -> Path:
    """Copy demo-east with two extra results (a long code, a markup-like one); return its config file."""
    data = tmp_path / "data"
    shutil.copytree(paths.demo_data_dir() / "demo-east", data)
    extra = [
        _observation("obs-long-code", LONG_CODE, "Long local sodium"),
        _observation("obs-markup", MARKUP_CODE, MARKUP_DISPLAY),
    ]
    with (data / "Observation.ndjson").open("ab") as out:
        for resource in extra:
            out.write(orjson.dumps(resource) + b"\n")
    write_test_secret(tmp_path / "site.key")
    config = tmp_path / "trial-adapter.toml"
    config.write_text(
        '[store]\nurl = "sqlite:///state.db"\n[privacy]\nhmac_key_file = "site.key"\n'
        '[[sites]]\nid = "demo-east"\ntimezone = "Asia/Shanghai"\nroster = "data/roster.csv"\n'
        '[sites.source]\nkind = "ndjson"\npath = "data"\n' + repository
    )
    return config


def column_text(output: str, header: str) -> str:
    """Everything one column of a rich table shows, its cells' lines joined without spaces.

    The table is the first whose heading names ``header``.  A value folded
    over several lines comes back whole; spaces are dropped because a
    wrapped cell (or heading) loses the space it was wrapped at.
    """
    lines = output.splitlines()
    for top, line in enumerate(lines):
        if not line.startswith("┏"):
            continue
        body = next(i for i in range(top, len(lines)) if lines[i].startswith("┡")) + 1
        heading = [line.split("┃") for line in lines[top + 1 : body - 1]]
        names = [spaceless("".join(cells)) for cells in zip(*heading, strict=True)]
        if spaceless(header) not in names:
            continue
        index = names.index(spaceless(header))
        cells = []
        for row in lines[body:]:
            if not row.startswith("│"):
                break
            cells.append(row.split("│")[index])
        return spaceless("".join(cells))
    raise AssertionError(f"no table with a column {header!r} in:\n{output}")


def spaceless(text: str) -> str:
    return "".join(text.split())
