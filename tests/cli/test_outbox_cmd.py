"""``push``, ``push --dry-run`` and ``outbox`` through the real CLI, on the demo-east site."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapter import config as config_mod
from adapter import errors, paths
from adapter.cli import main
from adapter.service import job
from adapter.sinks import redcap

from support import write_test_secret

runner = CliRunner()

REPOSITORIES = {
    "file": '[repository]\nkind = "file"\npath = "repo"\n',
    "fhir": '[repository]\nkind = "fhir"\nurl = "https://repo.example.org/fhir"\n'
    '[repository.auth]\nkind = "bearer"\ntoken_env = "TRIAL_TEST_UNSET_TOKEN"\n',
    "redcap": '[repository]\nkind = "redcap"\nurl = "https://redcap.example.org/api/"\n'
    'token_env = "TRIAL_TEST_UNSET_TOKEN"\n'
    '[repository.records.Transplant]\nfields = { day0 = "hsct_day0" }\n'
    '[repository.records.EligibilityAssessment]\nfields = { overall = "elig_overall" }\n'
    '[repository.records.TreatmentCycle]\ninstrument = "cycle"\ninstance = "{number}"\n'
    'fields = { start = "cyc_start" }\n'
    + "".join(
        f"[repository.records.{t}]\nskip = true\n"
        for t in (
            "StemCellCollection",
            "Reconstitution",
            "MrdResult",
        )
    ),
}


def site_config(tmp_path: Path, repository: str) -> Path:
    """A config for the demo-east site, synced but not yet delivered."""
    data = paths.demo_data_dir() / "demo-east"
    write_test_secret(tmp_path / "site.key")
    path = tmp_path / "trial-adapter.toml"
    path.write_text(
        f'[store]\nurl = "sqlite:///state.db"\n[privacy]\nhmac_key_file = "site.key"\n'
        f'[[sites]]\nid = "demo-east"\ntimezone = "Asia/Shanghai"\nroster = "{data / "roster.csv"}"\n'
        f'[sites.source]\nkind = "ndjson"\npath = "{data}"\n' + repository
    )
    config = config_mod.load_config(path)
    job.run_once(config, config.sites, deliver=False)
    return path


def outbox_json(config: Path) -> dict[str, object]:
    result = runner.invoke(main.app, ["outbox", "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


def test_outbox_dry_run_push_and_outbox_again(tmp_path: Path) -> None:
    config = site_config(tmp_path, REPOSITORIES["file"])
    before = outbox_json(config)
    pending = before["pending"]
    assert isinstance(pending, int) and pending > 0 and before["failing"] == 0 and before["oldest_pending_at"]

    dry = runner.invoke(main.app, ["push", "-c", str(config), "--dry-run", "--limit", "3"])
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.output)
    assert plan["items"] == 3 and plan["requests"][0]["method"] == "WRITE"
    assert outbox_json(config)["pending"] == pending, "a dry run sends nothing"
    assert not (tmp_path / "repo").exists()

    pushed = runner.invoke(main.app, ["push", "-c", str(config)])
    assert pushed.exit_code == 0, pushed.output
    assert f"Delivered {pending} change(s) to file repository" in pushed.output
    assert (tmp_path / "repo" / "manifest.json").exists()
    after = outbox_json(config)
    assert after["pending"] == 0 and after["delivered"] == pending

    shown = runner.invoke(main.app, ["outbox", "-c", str(config)])
    assert shown.exit_code == 0 and "0 pending" in " ".join(shown.output.split())  # wraps with long paths


@pytest.mark.parametrize("kind", ["fhir", "redcap"])
def test_dry_run_needs_no_token_and_shows_none(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRIAL_TEST_UNSET_TOKEN", raising=False)
    config = site_config(tmp_path, REPOSITORIES[kind])
    dry = runner.invoke(main.app, ["push", "-c", str(config), "--dry-run", "--limit", "5"])
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.output)
    assert plan["items"] == 5 and plan["requests"]
    assert "Bearer" not in dry.output
    if kind == "fhir":
        assert plan["requests"][0]["body"]["type"] == "transaction"
    else:
        [send] = [r for r in plan["requests"] if r["method"] == "POST"]
        assert send["body"]["token"] == redcap.REDACTED
        assert {row["redcap_repeat_instrument"] for row in send["body"]["data"]} == {"cycle"}
        assert any(r["method"] == "SKIP" for r in plan["requests"])
    missing = runner.invoke(main.app, ["push", "-c", str(config)])
    assert missing.exit_code == errors.EXIT_CONFIG
    assert "TRIAL_TEST_UNSET_TOKEN is unset" in missing.output


def test_push_to_an_unreachable_repository_stops_and_exits_7(tmp_path: Path) -> None:
    closed = '[repository]\nkind = "http"\nurl = "http://127.0.0.1:9/api"\ntimeout_seconds = 2\n'
    config = site_config(tmp_path, closed)
    pending = outbox_json(config)["pending"]
    pushed = runner.invoke(main.app, ["push", "-c", str(config)])
    assert pushed.exit_code == errors.EXIT_DELIVERY, pushed.output
    assert "Stopped early" in pushed.output and "cannot reach" in pushed.output
    report = outbox_json(config)
    assert report["pending"] == pending and report["failing"] == 1
    failures = report["failures"]
    assert isinstance(failures, list) and "cannot reach" in failures[0]["last_error"]
