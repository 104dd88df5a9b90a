"""User and actor names follow one rule, matched in full, before they reach a file, a log or the audit.

Issue 14, finding 7: ``--as`` on ``map`` wrote extra lines into the site's
override file through the ``# by <actor>`` comment (a newline in the name),
and ``users add`` accepted a name ending in a newline (``re.match`` with
``$`` lets one through).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from adapter import actors, errors
from adapter import config as config_mod
from adapter.cli import main
from adapter.mapping import overrides
from adapter.reconciliation import actions, fixes, undoing
from adapter.store import db, models
from adapter.web import accounts

from .conftest import CREATININE_CODE, SODIUM_ISSUE, fix_file, text_or_none
from .test_cli import write_config

runner = CliRunner()
INJECTED = 'dana\n"http://evil.example|1" = "creatinine"'


@pytest.mark.parametrize("name", ["bob\n", "bob\r\n", "bo b", "", "-bob", "bob\x00", "b" * 101, "bob\u2028x"])
def test_names_outside_the_rule_are_refused(name: str) -> None:
    assert not actors.is_user_name(name)
    assert not actors.is_actor(name)
    assert not actors.is_actor(f"cli:{name}")
    with pytest.raises(actors.BadName):
        actors.check_actor(name)


@pytest.mark.parametrize("name", ["dana", "dana.smith@hospital.example", "d_1-x", "b" * 100])
def test_names_inside_the_rule_pass(name: str) -> None:
    assert actors.is_user_name(name) and actors.is_actor(name) and actors.is_actor(f"cli:{name}")


def test_users_add_refuses_a_name_ending_in_a_newline(
    console_config: config_mod.Config, tmp_path: Path
) -> None:
    path = write_config(console_config, tmp_path)
    secret = tmp_path / "pw"
    secret.write_text("a-long-enough-password\n")
    refused = runner.invoke(
        main.app, ["users", "add", "mallory\n", "--password-file", str(secret), "-c", str(path)]
    )
    assert refused.exit_code == 2 and "user name" in refused.output
    sessions = db.open_store(console_config.store.url)
    with sessions() as session:
        names = set(session.scalars(sa.select(models.User.username)))
        assert not any(name.startswith("mallory") for name in names)
        with pytest.raises(accounts.AccountError):
            accounts.add_user(session, "mallory\n", "a-long-enough-password", accounts.Role.VIEWER, actor="t")


def test_map_as_with_a_newline_writes_nothing(console_config: config_mod.Config, tmp_path: Path) -> None:
    path = write_config(console_config, tmp_path)
    before = text_or_none(fix_file(console_config))
    command = ["map", "code", CREATININE_CODE, "creatinine", "-s", "demo-east", "--no-deliver"]
    command += ["-c", str(path)]
    result = runner.invoke(main.app, [*command, "--as", INJECTED])
    assert result.exit_code == 2, result.output
    assert "--as" in result.output
    assert text_or_none(fix_file(console_config)) == before
    with db.open_store(console_config.store.url)() as session:
        query = sa.select(models.AuditEntry).where(models.AuditEntry.action == actions.MAP_CODE)
        assert session.scalar(query) is None

    done = runner.invoke(main.app, [*command, "--as", "dana"])
    assert done.exit_code == 0, done.output
    written = fix_file(console_config).read_text(encoding="utf-8")
    assert f'"{CREATININE_CODE}" = "creatinine"  # by dana, ' in written
    assert "evil" not in written


def test_the_default_actor_is_cleaned(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(variable, "eve\nx y")
    assert actors.operating_system_actor() == "cli:eve_x_y"


def test_other_commands_taking_as_refuse_bad_names(console_config: config_mod.Config, tmp_path: Path) -> None:
    path = write_config(console_config, tmp_path)
    ignored = runner.invoke(
        main.app, ["issues", "ignore", SODIUM_ISSUE, "--reason", "r", "-c", str(path), "--as", "x\ny"]
    )
    assert ignored.exit_code == 2, ignored.output
    accept = ["accept-retraction", "--site", "demo-east", "--type", "Observation", "--reason", "r"]
    accepted = runner.invoke(main.app, [*accept, "-c", str(path), "--as", "x\ny"])
    assert accepted.exit_code == 2, accepted.output


def test_fixes_refuse_a_bad_actor_before_writing(console_config: config_mod.Config) -> None:
    """Defence in depth: whoever calls the library, a bad actor never reaches the file or the audit."""
    sessions = db.open_store(console_config.store.url)
    before = text_or_none(fix_file(console_config))
    with pytest.raises(actions.FixRefused, match="not a valid name"):
        fixes.map_code(console_config, sessions, "demo-east", CREATININE_CODE, "creatinine", actor=INJECTED)
    with pytest.raises(actions.FixRefused, match="not a valid name"):
        fixes.ignore_issue(sessions, SODIUM_ISSUE, "reason", actor="a\nb")
    with pytest.raises(actions.FixRefused, match="not a valid name"):
        undoing.undo(console_config, sessions, 1, actor="a\rb")
    assert text_or_none(fix_file(console_config)) == before
    with sessions() as session:
        assert session.get(models.IssueRow, SODIUM_ISSUE).status == "open"  # type: ignore[union-attr]


def test_an_override_note_cannot_hold_a_line_break(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    with pytest.raises(errors.MappingError, match="line break"):
        overrides.set_override(path, "codes", "x|1", "creatinine", note="by a\nb = 1")
    assert not path.exists()
