"""``trial-adapter map accept`` and the suggestions ``issues list`` and ``issues show`` print.

The site is demo-east plus ALT results under a local code shown as "GPT"
(``local_results``); its sodium code suggests nothing.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from click.testing import Result
from typer.testing import CliRunner

from adapter import config as config_mod
from adapter import errors
from adapter.cli import main
from adapter.mapping import overrides
from adapter.store import db, models

from cli_site import column_text, write_site
from local_results import GPT_KEY, LIS, SODIUM_KEY, add_gpt

runner = CliRunner()
GPT = f"{LIS}|0082"


def cli(*args: str) -> Result:
    return runner.invoke(main.app, list(args))


def words(result: Result) -> str:
    return " ".join(result.output.split())


@pytest.fixture
def site(tmp_path: Path) -> Path:
    config = write_site(tmp_path)
    add_gpt(tmp_path / "data")
    synced = cli("sync", "-c", str(config), "-q")
    assert synced.exit_code == 0, synced.output
    return config


def fix_file(config_path: Path) -> Path:
    return overrides.path_for(config_mod.load_config(config_path).overrides_dir(), "demo-east")


def audit_entries(config_path: Path) -> list[models.AuditEntry]:
    sessions = db.open_store(config_mod.load_config(config_path).store.url)
    with sessions() as session:
        return list(session.scalars(sa.select(models.AuditEntry).order_by(models.AuditEntry.id)))


def issue_status(config_path: Path, key: str) -> str:
    with db.open_store(config_mod.load_config(config_path).store.url)() as session:
        row = session.get(models.IssueRow, key)
        assert row is not None
        return row.status


def test_accept_maps_the_code_to_the_best_suggestion_like_map_code_and_audits_it(site: Path) -> None:
    accepted = cli("map", "accept", GPT_KEY, "-c", str(site), "--no-deliver")
    assert accepted.exit_code == 0, accepted.output
    said = words(accepted)
    assert f"Accepted the suggestion alt (ALT, 100 %) for {GPT}:" in said
    assert "- name 'GPT' is a known abbreviation of ALT" in said
    assert f"Mapped {GPT} to alt at demo-east" in said
    assert f"resolved {GPT_KEY}" in said and "trial-adapter map undo" in said
    assert f'"{GPT}" = "alt"' in fix_file(site).read_text(encoding="utf-8")
    assert issue_status(site, GPT_KEY) == "resolved"

    entry = audit_entries(site)[-1]
    assert entry.action == "mapping.code" and entry.target == f"demo-east:codes:{GPT}"
    assert entry.detail["issue"] == GPT_KEY and entry.detail["after"] == "alt"
    assert entry.detail["suggested"] is True and entry.detail["score"] == 1.0
    assert "name 'GPT' is a known abbreviation of ALT" in entry.detail["evidence"]
    assert entry.detail["issues_resolved"] == [GPT_KEY]

    again = cli("map", "accept", GPT_KEY, "-c", str(site), "--no-deliver")
    assert again.exit_code == errors.EXIT_USAGE and "a resolved unknown_code issue" in words(again)


def test_accept_takes_a_named_suggestion_and_who_accepted(site: Path) -> None:
    accepted = cli(
        "map", "accept", GPT_KEY, "--concept", "alt", "--as", "dana", "-c", str(site), "--no-deliver"
    )
    assert accepted.exit_code == 0, accepted.output
    entry = audit_entries(site)[-1]
    assert entry.actor == "dana" and entry.detail["suggested"] is True and entry.detail["after"] == "alt"


@pytest.mark.parametrize(
    ("key", "concept", "said"),
    [
        (GPT_KEY, "creatinine", "'creatinine' is not among the suggestions"),
        (SODIUM_KEY, None, "no concept is suggested"),
        (f"demo-east|unknown_code|code:{LIS}|nope", None, "no issue with key"),
    ],
)
def test_accept_refuses_what_is_not_a_suggestion_and_points_at_map_code(
    site: Path, key: str, concept: str | None, said: str
) -> None:
    before = audit_entries(site)
    refused = cli("map", "accept", key, *(["--concept", concept] if concept else []), "-c", str(site))
    assert refused.exit_code == errors.EXIT_USAGE, refused.output
    assert said in words(refused)
    if "no issue" not in said:
        assert "trial-adapter map code" in words(refused)
    assert not fix_file(site).exists() and audit_entries(site) == before


def test_accept_refuses_an_issue_that_is_not_an_unknown_code(site: Path) -> None:
    listed = orjson.loads(cli("issues", "list", "-c", str(site), "--format", "json").stdout)
    other = next(item["key"] for item in listed if item["kind"] != "unknown_code")
    refused = cli("map", "accept", other, "-c", str(site))
    assert refused.exit_code == errors.EXIT_USAGE
    assert "only an open unknown_code issue of a code gets suggestions" in words(refused)


def test_issues_list_and_show_give_the_suggestions(site: Path) -> None:
    as_json = cli("issues", "list", "-c", str(site), "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    items = {item["key"]: item for item in orjson.loads(as_json.stdout)}
    [alt] = items[GPT_KEY]["suggestions"]
    assert alt["concept"] == "alt" and alt["score"] == 1.0
    assert alt["evidence"][0] == "name 'GPT' is a known abbreviation of ALT"
    assert items[SODIUM_KEY]["suggestions"] == []  # asked, nothing fits
    assert all(item["suggestions"] is None for item in items.values() if item["kind"] != "unknown_code")

    as_csv = cli("issues", "list", "-c", str(site), "--format", "csv")
    rows = {row["key"]: row for row in csv.DictReader(io.StringIO(as_csv.stdout))}
    assert orjson.loads(rows[GPT_KEY]["suggestions"]) == items[GPT_KEY]["suggestions"]
    assert rows[SODIUM_KEY]["suggestions"] == "[]"

    table = cli("issues", "list", "-c", str(site), "--kind", "unknown_code")
    assert "alt(100%)" in column_text(table.output, "suggestion")

    shown = cli("issues", "show", GPT_KEY, "-c", str(site))
    assert shown.exit_code == 0, shown.output
    assert f"trial-adapter map accept '{GPT_KEY}'" in shown.output
    assert "1. alt (ALT), 100 %" in shown.output
    assert "- unit U/L fits ALT's canonical unit U/L" in shown.output
    assert "suggestions: none" in words(cli("issues", "show", SODIUM_KEY, "-c", str(site)))


def test_accept_help_has_an_example() -> None:
    shown = words(cli("map", "accept", "--help"))
    assert "trial-adapter map accept 'demo-east|unknown_code|code:" in shown
    assert "--concept" in shown and "--no-deliver" in shown and "Exit 2" in shown
