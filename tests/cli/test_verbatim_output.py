"""What the CLI prints from configs, data, servers and messages comes out verbatim (issue 17).

rich reads ``[codes]``, ``[[sites]]``, ``[bold]x[/bold]`` and ``[link=...]``
as markup and drops them; the CLI's consoles print with markup off, so none
of it may vanish from a hint, an issue, a check row, a path or a server's
error, whichever command prints it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import responses
from click.testing import Result
from typer.testing import CliRunner

from adapter import errors
from adapter.cli import main

from cli_site import LIS, MARKUP_CODE, MARKUP_DISPLAY, column_text, spaceless, write_site

runner = CliRunner()
MARKUP = "[codes] [[sites]] [bold]x[/bold] [link=https:evil.example]y[/link]"
API = "https://trials.example.org/api"


def cli(*args: str) -> Result:
    return runner.invoke(main.app, list(args))


def words(result: Result) -> str:
    return " ".join(result.output.split())


def test_paths_with_brackets_in_check_sync_push_and_retraction_hints(tmp_path: Path) -> None:
    site = tmp_path / f"site {MARKUP}"
    site.mkdir(parents=True)  # "[/bold]" makes folders inside folders
    config = write_site(site)
    checked = cli("check", "-c", str(config))
    assert checked.exit_code == 0, checked.output
    assert spaceless(f"ok ({site}/repo") in column_text(checked.output, "result")

    synced = cli("sync", "-c", str(config), "-q")
    assert synced.exit_code == 0, synced.output
    assert f"to file repository {site}/repo;" in words(synced)
    pushed = cli("push", "-c", str(config))
    assert f"to file repository {site}/repo;" in words(pushed)

    (site / "data" / "Observation.ndjson").write_text("")  # every result gone: the guard holds it back
    held = cli("sync", "-c", str(config), "-q")
    assert held.exit_code == errors.EXIT_RETRACTION_HELD, held.output
    assert "held back: demo-east no longer lists" in words(held)
    assert f'--reason "…" -c {config}`' in words(held)
    accepted = cli(
        "accept-retraction", "-s", "demo-east", "-t", "Observation", "-r", MARKUP, "-c", str(config)
    )
    assert accepted.exit_code == 0, accepted.output
    assert f"-c {config}." in words(accepted)


def test_a_missing_source_folder_named_like_markup_is_named_whole(tmp_path: Path) -> None:
    config = write_site(tmp_path)
    text = config.read_text().replace('path = "data"', f'path = "{MARKUP}"')
    config.write_text(text)
    checked = cli("check", "-c", str(config))
    assert checked.exit_code == errors.EXIT_SOURCE, checked.output
    assert f"source folder {tmp_path}/{MARKUP} does not exist; check [[sites]] source.path" in checked.output


def test_issue_text_from_the_site_prints_whole_in_show_ignore_and_map(tmp_path: Path) -> None:
    config = write_site(tmp_path)
    assert cli("sync", "-c", str(config), "-q").exit_code == 0
    key = f"demo-east|unknown_code|code:{LIS}|{MARKUP_CODE}"

    shown = cli("issues", "show", key, "-c", str(config))
    assert shown.exit_code == 0, shown.output
    assert f"key: {key}\n" in shown.output
    assert f"code: {LIS}|{MARKUP_CODE}\n" in shown.output
    assert f"({MARKUP_DISPLAY})" in words(shown)
    assert "under [ignored_codes]" in words(shown)  # the guidance names the TOML table

    ignored = cli("issues", "ignore", key, "-r", MARKUP, "-c", str(config))
    assert ignored.exit_code == 0, ignored.output
    assert f"Ignored {key}: {MARKUP}" in words(ignored)
    listed = cli("issues", "list", "-c", str(config), "--status", "ignored", "--format", "csv")
    assert MARKUP in listed.stdout

    mapped = cli("map", "code", f"{LIS}|{MARKUP_CODE}", "creatinine", "-s", "demo-east", "-c", str(config))
    assert mapped.exit_code == 0, mapped.output
    assert f"Mapped {LIS}|{MARKUP_CODE} to creatinine at demo-east" in words(mapped)
    again = ("map", "ignore-code", f"{LIS}|{MARKUP_CODE}", "-s", "demo-east", "-r", "x", "-c", str(config))
    refused = cli(*again)
    assert refused.exit_code != 0
    assert f"{LIS}|{MARKUP_CODE}" in words(refused)


@responses.activate
def test_the_repositorys_401_hint_keeps_its_table_name(tmp_path: Path) -> None:
    token = tmp_path / "repository.token"
    token.write_text("t0ken\n")
    token.chmod(0o600)
    config = write_site(
        tmp_path,
        f'[repository]\nkind = "http"\nurl = "{API}"\n'
        f'[repository.auth]\nkind = "bearer"\ntoken_file = "{token}"\n',
    )
    for method in (responses.PUT, responses.DELETE, responses.HEAD):
        responses.add(method, re.compile(re.escape(API) + ".*"), status=401)
    hint = "the repository refused the credentials; check [repository.auth] (or token_env / token_file)"

    synced = cli("sync", "-c", str(config), "-q")
    assert synced.exit_code == errors.EXIT_DELIVERY, synced.output
    assert hint in words(synced)
    checked = cli("check", "-c", str(config))
    assert checked.exit_code == errors.EXIT_DELIVERY, checked.output
    assert hint in words(checked)
    backlog = cli("outbox", "-c", str(config))
    assert backlog.exit_code == 0, backlog.output
    assert spaceless(hint) in column_text(backlog.output, "last error")


def test_a_fatal_error_outside_a_command_body_is_printed_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    code = main.main(["issues", "ignore", "some-key", "-r", "x", "--as", "[bold]ann[/bold]\nlee"])
    assert code == errors.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: --as: ") and "[bold]ann[/bold]" in err
