"""``discover`` and ``issues list``: every code and key whole, as a table, CSV or JSON (issue 17).

A table wraps a long local code inside its cell at any terminal width (80
columns, or the 120 a pipe gets), never ends it in an ellipsis; CSV and
JSON hold every field of every item, exactly as stored, for scripts.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import orjson
import pytest
from click.testing import Result
from typer.testing import CliRunner

from adapter.cli import common, discover_cmd, issues_cmd, main

from cli_site import LIS, LONG_CODE, MARKUP_CODE, MARKUP_DISPLAY, column_text, spaceless, write_site

runner = CliRunner()
LONG = f"{LIS}|{LONG_CODE}"
LONG_KEY = f"demo-east|unknown_code|code:{LONG}"


def cli(*args: str) -> Result:
    return runner.invoke(main.app, list(args))


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, synced once: its issues are in the state database."""
    config = write_site(tmp_path_factory.mktemp("site"))
    result = cli("sync", "-c", str(config), "-q")
    assert result.exit_code == 0, result.output
    return config


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("width", [80, 120])
def test_discover_table_shows_long_codes_whole(
    synced: Path, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common.console, "width", width)
    result = cli("discover", "-s", "demo-east", "-c", str(synced))
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= width
    assert "…" not in result.output
    codes = column_text(result.output, "code")
    assert LONG in codes
    assert f"{LIS}|{MARKUP_CODE}" in codes
    assert spaceless(MARKUP_DISPLAY) in column_text(result.output, "display")


def test_discover_csv_and_json_hold_every_field(synced: Path) -> None:
    as_csv = cli("discover", "-s", "demo-east", "-c", str(synced), "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows = csv_rows(as_csv.stdout)
    assert list(rows[0]) == list(discover_cmd.FIELDS)
    long = next(row for row in rows if row["code"] == LONG_CODE)
    assert long == {
        "resource_type": "Observation",
        "system": LIS,
        "code": LONG_CODE,
        "display": "Long local sodium",
        "unit": "mmol/L",
        "count": "1",
        "status": "unmapped",
        "concept": "",
    }
    assert next(row for row in rows if row["code"] == MARKUP_CODE)["display"] == MARKUP_DISPLAY
    mapped = next(row for row in rows if row["code"] == "0045")
    assert mapped["status"] == "mapped" and mapped["concept"] == "creatinine"

    as_json = cli("discover", "-s", "demo-east", "-c", str(synced), "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    items = orjson.loads(as_json.stdout)
    assert all(list(item) == list(discover_cmd.FIELDS) for item in items)
    assert [{k: str(v) if v is not None else "" for k, v in item.items()} for item in items] == rows
    assert next(item for item in items if item["code"] == LONG_CODE)["count"] == 1

    alias = cli("discover", "-s", "demo-east", "-c", str(synced), "--json", "--unmapped")
    assert orjson.loads(alias.stdout) == [item for item in items if item["status"] == "unmapped"]
    clash = cli("discover", "-s", "demo-east", "-c", str(synced), "--json", "--format", "csv")
    assert clash.exit_code == 2 and "--json is --format json" in clash.output


@pytest.mark.parametrize("width", [80, 120])
def test_issues_table_shows_long_keys_whole(
    synced: Path, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common.console, "width", width)
    result = cli("issues", "list", "-c", str(synced), "--kind", "unknown_code")
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= width
    assert "…" not in result.output
    assert LONG_KEY in column_text(result.output, "key")
    assert spaceless(MARKUP_DISPLAY) in column_text(result.output, "detail")


def test_issues_csv_and_json_hold_every_field_without_patient_identifiers(synced: Path) -> None:
    as_json = cli("issues", "list", "-c", str(synced), "--status", "all", "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    items = orjson.loads(as_json.stdout)
    assert all(list(item) == list(issues_cmd.FIELDS) for item in items)
    long = next(item for item in items if item["key"] == LONG_KEY)
    assert long["site"] == "demo-east" and long["kind"] == "unknown_code" and long["status"] == "open"
    assert long["code"] == LONG and long["sources"] == 1 and long["subject"] is None
    assert LONG in long["message"]
    first_seen = dt.datetime.fromisoformat(long["first_seen"])
    assert long["first_seen"].endswith("Z") and first_seen.utcoffset() == dt.timedelta(0)
    markup = next(item for item in items if item["code"] == f"{LIS}|{MARKUP_CODE}")
    assert MARKUP_DISPLAY in markup["message"]
    subjects = {item["subject"] for item in items if item["subject"]}
    assert subjects and all(subject.startswith("NCT06507514-E-") for subject in subjects)

    as_csv = cli("issues", "list", "-c", str(synced), "--status", "all", "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows = csv_rows(as_csv.stdout)
    assert list(rows[0]) == list(issues_cmd.FIELDS)
    assert [{k: _csv_cell(v) for k, v in item.items()} for item in items] == rows

    data = synced.parent / "data"
    roster_ids = [line.split(",")[1] for line in (data / "roster.csv").read_text().splitlines()[1:]]
    names = [patient["name"][0]["text"] for patient in _patients(data)]
    for output in (as_json.stdout, as_csv.stdout):
        assert not [needle for needle in roster_ids + names if needle in output], "PHI in issues list"


def _csv_cell(value: object) -> str:
    """A JSON value as the CSV cell holds it: a list (the suggestions) as JSON text."""
    if isinstance(value, list):
        return orjson.dumps(value).decode()
    return "" if value is None else str(value)


def _patients(data: Path) -> list[dict[str, list[dict[str, str]]]]:
    return [orjson.loads(line) for line in (data / "Patient.ndjson").read_bytes().splitlines()]


def test_issues_list_says_on_stderr_when_the_limit_cuts_it(synced: Path) -> None:
    result = cli("issues", "list", "-c", str(synced), "--limit", "1", "--format", "json")
    assert result.exit_code == 0, result.output
    assert len(orjson.loads(result.stdout)) == 1
    assert "More than 1 issues match" in result.stderr
    every = cli("issues", "list", "-c", str(synced), "--limit", "1000", "--format", "json")
    assert every.stderr == "" and len(orjson.loads(every.stdout)) > 1
    bad = cli("issues", "list", "-c", str(synced), "--status", "closed")
    assert bad.exit_code == 2 and "open, ignored, resolved, all" in bad.output


def test_help_explains_the_formats_with_an_example() -> None:
    for command in (["discover", "--help"], ["issues", "list", "--help"]):
        shown = " ".join(cli(*command).output.split())
        assert "--format csv: a header row" in shown and "--format json | jq" in shown
        assert "[default: table]" in shown
