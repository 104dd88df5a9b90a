"""The command line, called in-process the way a site IT team would use it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from adapter import actors, errors
from adapter import config as config_mod
from adapter.cli import common, main, report
from adapter.service import job
from adapter.store import db, models
from adapter.sync import SyncSummary

from cli_site import column_text
from support import write_test_secret

runner = CliRunner()


def test_help_teaches_first_steps() -> None:
    result = runner.invoke(main.app, ["--help"])
    assert result.exit_code == 0
    for fragment in ("trial-adapter demo", "check", "Exit codes"):
        assert fragment in result.output


def test_demo_prints_summary_and_writes_records(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    workdir.mkdir()
    write_test_secret(workdir / "site-secret.key")
    result = runner.invoke(main.app, ["demo", "--workdir", str(workdir), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "TreatmentCycle" in result.output and "unknown_code" in result.output
    assert (workdir / "repository" / "Transplant.ndjson").stat().st_size > 0
    again = runner.invoke(main.app, ["demo", "--workdir", str(workdir), "--quiet"])
    assert "Delivered 0 change(s)" in again.output


def test_sync_check_and_issues_on_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from adapter import paths

    monkeypatch.setattr(common.console, "width", 120)  # the sync table's headings whole

    data = paths.demo_data_dir() / "demo-east"
    write_test_secret(tmp_path / "site.key")
    config = tmp_path / "trial-adapter.toml"
    config.write_text(
        f"""
[store]
url = "sqlite:///state.db"
[privacy]
hmac_key_file = "site.key"
[[sites]]
id = "demo-east"
timezone = "Asia/Shanghai"
roster = "{data / "roster.csv"}"
[sites.source]
kind = "ndjson"
path = "{data}"
[repository]
kind = "file"
path = "repo"
"""
    )
    assert runner.invoke(main.app, ["check", "-c", str(config)]).exit_code == 0
    result = runner.invoke(main.app, ["sync", "-c", str(config), "--once", "-q", "--fail-on-issues"])
    assert result.exit_code == errors.EXIT_ISSUES_OPEN, result.output
    assert column_text(result.output, "EHR requests") == "0", "a folder source asks the EHR nothing"
    listed = runner.invoke(main.app, ["issues", "list", "-c", str(config), "--kind", "unknown_code"])
    assert "0099" in listed.output
    key = "demo-east|unknown_code|code:http://hospital-east.example/fhir/lis|0099"
    shown = runner.invoke(main.app, ["issues", "show", key, "-c", str(config)])
    assert "raised by" in shown.output and "Observation/" in shown.output
    assert "what usually resolves it: Map the code" in " ".join(shown.output.split())
    bad_actor = runner.invoke(
        main.app, ["issues", "ignore", key, "-c", str(config), "-r", "x", "--as", "a\nb"]
    )
    assert isinstance(bad_actor.exception, errors.FatalExit)
    assert bad_actor.exit_code == errors.EXIT_USAGE and "--as:" in bad_actor.exception.message
    ignored = runner.invoke(
        main.app, ["issues", "ignore", key, "-c", str(config), "--reason", "sodium: not needed"]
    )
    assert ignored.exit_code == 0
    assert _actors_of(config, "issue.ignore") == [actors.operating_system_actor()]
    listed = runner.invoke(main.app, ["issues", "list", "-c", str(config), "--kind", "unknown_code"])
    assert "0099" not in listed.output
    missing = runner.invoke(main.app, ["issues", "show", "nope", "-c", str(config)])
    assert missing.exit_code == 2 and "no issue with key" in missing.output


@pytest.mark.parametrize("width", [80, 120])
def test_the_sync_table_shows_the_requests_each_pass_sent_the_ehr(
    width: int,
    fresh_demo: config_mod.Config,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(common.console, "width", width)
    passes = [SyncSummary(site="demo-north", resources_read=611, ehr_requests=1234, seconds=12.3)]
    report.print_summary(fresh_demo, job.JobResult(syncs=passes, delivery=None))
    lines = capsys.readouterr().out.splitlines()
    table = lines[1 : lines.index(next(line for line in lines if line.startswith("└"))) + 1]
    assert max(len(line) for line in table) <= width
    row = next(line for line in table if "demo-north" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == ["demo-north", "611", "0", "0", "0", "0", "0", "0", "1234", "12.3"], "every number whole"
    if width == 120:  # at 80 the headings shorten instead
        assert column_text("\n".join(table), "EHR requests") == "1234"


def _actors_of(config_path: Path, action_prefix: str) -> list[str]:
    """Who the audit log names for the actions starting with ``action_prefix``."""
    session_factory = db.open_store(config_mod.load_config(config_path).store.url)
    with session_factory() as session:
        entries = session.scalars(sa.select(models.AuditEntry)).all()
        return [e.actor for e in entries if e.action.startswith(action_prefix)]


def test_check_reports_a_missing_source_folder(tmp_path: Path) -> None:
    write_test_secret(tmp_path / "site.key")
    (tmp_path / "roster.csv").write_text("identifier_system,identifier_value,subject_id,enrolment_date\n")
    config = tmp_path / "c.toml"
    config.write_text(
        '[privacy]\nhmac_key_file = "site.key"\n[[sites]]\nid = "x"\ntimezone = "UTC"\n'
        'roster = "roster.csv"\n'
        '[sites.source]\nkind = "ndjson"\npath = "missing"\n[repository]\nkind = "file"\npath = "repo"\n'
    )
    result = runner.invoke(main.app, ["check", "-c", str(config)])
    assert result.exit_code == errors.EXIT_SOURCE
    assert "does not exist" in result.output


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    key = tmp_path / "k"
    assert runner.invoke(main.app, ["keygen", str(key)]).exit_code == 0
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert runner.invoke(main.app, ["keygen", str(key)]).exit_code == errors.EXIT_CONFIG


def test_main_returns_exit_code() -> None:
    assert main.main(["--version"]) == 0


def test_errors_keep_toml_table_names_and_are_not_wrapped(tmp_path: Path) -> None:
    """rich would read ``[[sites]]`` as markup and wrap at 80 columns in a pipe; neither may happen."""
    config = tmp_path / "bad.toml"
    long_url = "https://ehr.example.org/" + "fhir/" * 30
    config.write_text(
        f'[[sites]]\nid = "x"\nroster = "r.csv"\n[sites.source]\nkind = "fhir-rest"\n'
        f'base_url = "{long_url}"\nmappings = "m"\n'
    )
    result = subprocess.run(
        [str(Path(sys.executable).with_name("trial-adapter")), "check", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 3
    line = next(line for line in result.stderr.splitlines() if "source.mappings" in line)
    assert line.startswith("  - [[sites]] #1")  # the table name intact
    assert line.endswith("config.example.toml)")  # and the whole message on one line
