"""Delivery failures are loud, through the real CLI (issue 13, item 5).

``push`` and ``sync --once`` exit 7 while items wait because their last
attempt failed, naming the error (credentials blanked) and when the next
retry is due; a run that tried nothing because every waiting item is still
in its backoff says so and exits 7 too.  ``check`` tries the repository.
The http repository is mocked with ``responses``: refused token, timeout.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests
import responses
from click.testing import Result
from typer.testing import CliRunner

from adapter import errors, paths
from adapter.cli import main

from support import write_test_secret

runner = CliRunner()
API = "https://trials.example.org/api"
TOKEN = "repository-token-9876"  # noqa: S105
PUT = re.compile(re.escape(API) + r"/.*")


def site(tmp_path: Path) -> Path:
    """demo-east, delivering to an http repository with a bearer token from a file."""
    data = paths.demo_data_dir() / "demo-east"
    write_test_secret(tmp_path / "site.key")
    token = tmp_path / "repository.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    path = tmp_path / "trial-adapter.toml"
    path.write_text(
        f'[store]\nurl = "sqlite:///state.db"\n[privacy]\nhmac_key_file = "site.key"\n'
        f'[[sites]]\nid = "demo-east"\ntimezone = "Asia/Shanghai"\nroster = "{data / "roster.csv"}"\n'
        f'[sites.source]\nkind = "ndjson"\npath = "{data}"\n'
        f'[repository]\nkind = "http"\nurl = "{API}"\ntimeout_seconds = 3\n'
        f'[repository.auth]\nkind = "bearer"\ntoken_file = "{token}"\n'
    )
    return path


def cli(*args: str) -> Result:
    return runner.invoke(main.app, list(args))


def words(result: Result) -> str:
    return " ".join(result.output.split())


def refuse_token() -> None:
    """The repository answers 401 and echoes the Authorization header, as some gateways do."""
    body = {"error": f"invalid token; got Authorization: Bearer {TOKEN}"}
    for method in (responses.PUT, responses.DELETE, responses.GET):
        responses.add(method, PUT, status=401, json=body)
        responses.add(method, API, status=401, json=body)
    responses.add(responses.HEAD, API, status=401)  # a HEAD answer has no body


@responses.activate
def test_a_refused_token_makes_push_and_sync_exit_7_with_the_error_and_the_retry_time(tmp_path: Path) -> None:
    config = site(tmp_path)
    refuse_token()

    synced = cli("sync", "-c", str(config), "--once", "-q")
    assert synced.exit_code == errors.EXIT_DELIVERY, synced.output
    said = words(synced)
    assert "delivery failed" in said and "HTTP 401" in said and "refused the credentials" in said
    assert re.search(r"next retry at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in \d+ s\)", said), said
    assert "push --retry-now" in said and "trial-adapter outbox" in said
    assert TOKEN not in synced.output, "the echoed token is blanked"

    pushed = cli("push", "-c", str(config))
    assert pushed.exit_code == errors.EXIT_DELIVERY, pushed.output
    assert "HTTP 401" in words(pushed) and "next retry at" in words(pushed)
    assert TOKEN not in pushed.output

    listed = cli("outbox", "-c", str(config), "--json")
    assert TOKEN not in listed.output and "HTTP 401" in listed.output

    before = len(responses.calls)
    checked = cli("check", "-c", str(config))
    assert checked.exit_code == errors.EXIT_DELIVERY, checked.output
    assert "repository http" in checked.output and "HTTP 401" in words(checked)
    assert TOKEN not in checked.output
    assert [c.request.method for c in responses.calls[before:]] == ["HEAD"], "check writes nothing"


@responses.activate
def test_a_run_that_only_waits_out_the_backoff_says_when_and_exits_7(tmp_path: Path) -> None:
    config = site(tmp_path)
    refuse_token()
    cli("sync", "-c", str(config), "--once", "-q")
    # Each push fails one more subject's first item (an outage ends the pass), until all wait.
    for _ in range(10):
        pushed = cli("push", "-c", str(config))
        assert pushed.exit_code == errors.EXIT_DELIVERY, pushed.output
        if "did not try them" in words(pushed):
            break
    else:
        pytest.fail("every subject should be waiting out its backoff by now")
    said = words(pushed)
    assert "Delivered 0 change(s)" in said and "0 failed" in said
    assert "waiting out their backoff after failing earlier" in said and "HTTP 401" in said
    assert re.search(r"next retry at .* UTC \(in \d+ s\)", said), said
    tried = len(responses.calls)
    assert cli("sync", "-c", str(config), "--once", "-q").exit_code == errors.EXIT_DELIVERY
    assert len(responses.calls) == tried, "nothing tried before the backoff ends"

    # The token is fixed at the repository: --retry-now tries at once and everything arrives.
    responses.reset()
    responses.add(responses.PUT, PUT, status=204)
    fixed = cli("push", "-c", str(config), "--retry-now")
    assert fixed.exit_code == 0, fixed.output
    assert "0 failed, 0 waiting" in words(fixed) and "error" not in fixed.output
    assert json.loads(cli("outbox", "-c", str(config), "--json").output)["pending"] == 0


@responses.activate
def test_a_timeout_is_named_with_the_retry_time(tmp_path: Path) -> None:
    config = site(tmp_path)
    responses.add(responses.PUT, PUT, body=requests.ReadTimeout())
    synced = cli("sync", "-c", str(config), "--once", "-q")
    assert synced.exit_code == errors.EXIT_DELIVERY, synced.output
    assert "no answer within 3 s" in words(synced) and "next retry at" in words(synced)


@responses.activate
def test_a_repository_that_works_exits_0_and_check_says_ok(tmp_path: Path) -> None:
    config = site(tmp_path)
    responses.add(responses.HEAD, API, status=404)
    responses.add(responses.PUT, PUT, status=204)
    checked = cli("check", "-c", str(config))
    assert checked.exit_code == 0, checked.output
    assert "credentials not refused" in words(checked)
    synced = cli("sync", "-c", str(config), "--once", "-q")
    assert synced.exit_code == 0, synced.output
    assert "error" not in synced.output and "retry" not in synced.output


def test_a_missing_token_file_is_a_config_error_in_check(tmp_path: Path) -> None:
    config = site(tmp_path)
    (tmp_path / "repository.token").unlink()
    checked = cli("check", "-c", str(config))
    assert checked.exit_code == errors.EXIT_CONFIG, checked.output
    assert "repository.token" in words(checked) and "put the token on its first line" in words(checked)
