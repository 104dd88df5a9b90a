"""Bad configs exit with a message naming the file, the key and the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapter import config as config_mod
from adapter import errors
from adapter.cli.main import app

from support import minimal_config

ROOT = Path(__file__).resolve().parents[1]

GOOD = """
[[sites]]
id = "site-a"
timezone = "Asia/Shanghai"
roster = "roster.csv"
[sites.source]
kind = "ndjson"
path = "data"
[repository]
kind = "file"
path = "out"
"""


def test_example_config_is_valid() -> None:
    config = config_mod.load_config(ROOT / "config.example.toml")
    assert config.sites[0].id == "site-example"
    assert config.store.url == f"sqlite:///{ROOT / 'state/trial-adapter.db'}"


def test_relative_paths_resolve_against_the_config_folder(write_config: Callable[[str], Path]) -> None:
    path = write_config(GOOD)
    config = config_mod.load_config(path)
    assert config.sites[0].roster == path.parent / "roster.csv"
    assert config.sites[0].source.path == path.parent / "data"
    assert config.repository.path == path.parent / "out"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace('id = "site-a"\n', ""), ["[[sites]] #1 id: is required but missing", "short site id"]),
        (
            GOOD.replace('"Asia/Shanghai"', '"Mars/Base"'),
            ["timezone", "unknown timezone 'Mars/Base'", "IANA"],
        ),
        (GOOD + "\n[extra]\nx = 1\n", ["extra: is not a known setting", "config.example.toml"]),
        (
            GOOD.replace('kind = "ndjson"', 'kind = "ftp"'),
            ["source", "kind 'ftp' is not supported", "ndjson"],
        ),
        (GOOD.replace('path = "out"', "path = 3"), ["repository.path", "folder the trial-repository"]),
        (
            GOOD + "\n[schedule]\nsync_interval_minutes = 0\n",
            ["schedule.sync_interval_minutes", "1 to 10080"],
        ),
        (GOOD.replace('"site-a"', '"Site A"'), ["[[sites]] #1", "id", "lowercase"]),
        (
            GOOD.replace('roster = "roster.csv"', 'roster = "roster.csv"\nspo2_without_oxygen_record = "RA"'),
            [
                '[[sites]] #1 (id "site-a") spo2_without_oxygen_record',
                "'unknown' or 'room_air'",
                "room air unless oxygen is charted",
            ],
        ),
        ("[[sites]\nid=", ["not valid TOML", "line 1"]),
        ("", ["sites: is required but missing", "repository: is required but missing"]),
    ],
)
def test_bad_config_names_key_and_fix(
    write_config: Callable[[str], Path], text: str, expected: list[str]
) -> None:
    path = write_config(text)
    with pytest.raises(errors.ConfigError) as caught:
        config_mod.load_config(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    for fragment in expected:
        assert fragment in message


def test_duplicate_site_ids_are_refused(tmp_path: Path) -> None:
    raw = minimal_config()
    raw["sites"] = raw["sites"] * 2
    with pytest.raises(errors.ConfigError, match="appears twice"):
        config_mod.config_from_dict(raw, base_dir=tmp_path)


def test_missing_file_suggests_the_example(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match=r"copy config\.example\.toml"):
        config_mod.load_config(tmp_path / "nope.toml")


def test_cli_reports_bad_config_without_traceback(write_config: Callable[[str], Path]) -> None:
    path = write_config(GOOD.replace('"Asia/Shanghai"', '"Nowhere/Town"'))
    result = CliRunner().invoke(app, ["sync", "--config", str(path), "--once", "-q"])
    assert result.exit_code == errors.EXIT_CONFIG
    assert "Traceback" not in result.output
    assert "unknown timezone" in result.output


def test_cli_reports_missing_secret_as_config_error(
    write_config: Callable[[str], Path], tmp_path: Path
) -> None:
    path = write_config(GOOD)
    (tmp_path / "roster.csv").write_text("identifier_system,identifier_value,subject_id,enrolment_date\n")
    result = CliRunner().invoke(app, ["sync", "--config", str(path), "-q"])
    assert result.exit_code == errors.EXIT_CONFIG
    assert "hmac_key_file" in result.output
