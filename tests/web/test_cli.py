"""The console's command-line side: users, map, and the console command's wiring."""

from __future__ import annotations

import tomllib
from pathlib import Path

from typer.testing import CliRunner

from adapter import config as config_mod
from adapter.cli import main
from adapter.store import db
from adapter.web import accounts

runner = CliRunner()


def write_config(config: config_mod.Config, folder: Path) -> Path:
    """A TOML file equivalent to the sandbox's config, for the CLI."""
    site_tables = "".join(
        f'[[sites]]\nid = "{s.id}"\ntimezone = "{s.timezone}"\nroster = "{s.roster}"\n'
        f'[sites.source]\nkind = "ndjson"\npath = "{s.source.path}"\n'
        for s in config.sites
    )
    text = (
        f'[study]\nmappings = "{config.study.mappings}"\n[store]\nurl = "{config.store.url}"\n'
        f'[privacy]\nhmac_key_file = "{config.privacy.hmac_key_file}"\n'
        f'[repository]\nkind = "file"\npath = "{config.repository.path}"\n'
        f'[console]\nport = 8799\nsession_secret_file = "{config.console.session_secret_file}"\n'
        + site_tables
    )
    path = folder / "trial-adapter.toml"
    path.write_text(text, encoding="utf-8")
    tomllib.loads(text)
    return path


def test_users_add_reads_the_password_from_a_file_and_lists_users(
    console_config: config_mod.Config, tmp_path: Path
) -> None:
    path = write_config(console_config, tmp_path)
    secret = tmp_path / "pw"
    secret.write_text("a-long-enough-password\n")
    added = runner.invoke(
        main.app,
        ["users", "add", "mona", "--role", "viewer", "--password-file", str(secret), "-c", str(path)],
    )
    assert added.exit_code == 0, added.output
    with db.open_store(console_config.store.url)() as session:
        assert accounts.authenticate(session, "mona", "a-long-enough-password") is not None
    listed = runner.invoke(main.app, ["users", "list", "-c", str(path)])
    assert "mona" in listed.output and "viewer" in listed.output
    short = tmp_path / "short"
    short.write_text("short\n")
    refused = runner.invoke(main.app, ["users", "add", "x", "--password-file", str(short), "-c", str(path)])
    assert refused.exit_code == 2 and "at least" in refused.output


def test_map_ignore_code_on_the_command_line_reports_and_audits(
    console_config: config_mod.Config, tmp_path: Path
) -> None:
    path = write_config(console_config, tmp_path)
    result = runner.invoke(
        main.app,
        [
            "map",
            "ignore-code",
            "http://hospital-east.example/fhir/lis|0099",
            "--site",
            "demo-east",
            "--reason",
            "sodium is not a protocol lab",
            "-c",
            str(path),
            "--as",
            "dana",
            "--no-deliver",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 issue resolved" in result.output and "resolved demo-east|unknown_code" in result.output
    assert "trial-adapter map undo" in result.output
    refused = runner.invoke(
        main.app, ["map", "code", "x|y", "nonsense", "--site", "demo-east", "-c", str(path)]
    )
    assert refused.exit_code == 2 and "unknown concept" in refused.output


def test_console_config_defaults_to_localhost(console_config: config_mod.Config) -> None:
    assert config_mod.ConsoleConfig().bind == "127.0.0.1"
    assert console_config.console.session_secret_file.is_absolute()
    help_text = runner.invoke(main.app, ["console", "--help"]).output
    assert "--bind" in help_text and "--port" in help_text
