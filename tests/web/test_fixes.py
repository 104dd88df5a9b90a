"""adapter.fixes at the file level: override edits keep comments; bad fixes change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter import config as config_mod
from adapter import errors, fixes
from adapter.store import db

from .conftest import CREATININE_CODE

EAST = """# East overrides.

[codes]
"http://lab.example|1" = "wbc"   # 白细胞
# a comment about the next table
[units]

# ignored ones below
[ignored_codes]
"""


def test_a_new_entry_goes_after_the_last_entry_of_its_table(tmp_path: Path) -> None:
    path = tmp_path / "east.toml"
    path.write_text(EAST, encoding="utf-8")
    assert fixes.set_override(path, "codes", "http://lab.example|2", "platelets", note="by dana") is None
    assert fixes.set_override(path, "units", "umol/l", "umol/L") is None
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[3:6] == [
        '"http://lab.example|1" = "wbc"   # 白细胞',
        '"http://lab.example|2" = "platelets"  # by dana',
        "# a comment about the next table",
    ]
    assert lines[lines.index("[units]") + 1] == '"umol/l" = "umol/L"'
    assert fixes.set_override(path, "codes", "http://lab.example|2", None) == "platelets"
    assert fixes.set_override(path, "units", "umol/l", None) == "umol/L"
    assert path.read_text(encoding="utf-8") == EAST


def test_changing_an_entry_keeps_its_place_and_a_missing_file_or_table_is_created(tmp_path: Path) -> None:
    path = tmp_path / "east.toml"
    path.write_text(EAST, encoding="utf-8")
    assert fixes.set_override(path, "codes", "http://lab.example|1", "platelets") == "wbc"
    assert fixes.read_override(path)["codes"] == {"http://lab.example|1": "platelets"}
    fresh = tmp_path / "new-site.toml"
    fixes.set_override(fresh, "ignored_codes", "s|c", "not needed")
    assert fixes.read_override(fresh)["ignored_codes"] == {"s|c": "not needed"}
    bare = tmp_path / "bare.toml"
    bare.write_text("# only a comment\n", encoding="utf-8")
    fixes.set_override(bare, "units", "u", "mg/dL")
    assert bare.read_text(encoding="utf-8").startswith("# only a comment\n")
    assert fixes.read_override(bare)["units"] == {"u": "mg/dL"}


def test_fixes_that_cannot_work_are_refused_before_anything_is_written(
    console_config: config_mod.Config,
) -> None:
    sessions = db.open_store(console_config.store.url)
    override = console_config.study.mappings / "sites" / "demo-east.toml"
    before = override.read_text(encoding="utf-8")
    refusals = [
        lambda: fixes.map_code(
            console_config, sessions, "demo-east", "http://loinc.org|2160-0", "wbc", actor="t"
        ),
        lambda: fixes.map_code(console_config, sessions, "demo-east", "no-bar-here", "wbc", actor="t"),
        lambda: fixes.map_code(console_config, sessions, "demo-east", CREATININE_CODE, "nonsense", actor="t"),
        lambda: fixes.map_unit(console_config, sessions, "demo-east", "umol/l", "furlongs", actor="t"),
        lambda: fixes.map_unit(console_config, sessions, "demo-east", "  ", "mg/dL", actor="t"),
        lambda: fixes.ignore_code(console_config, sessions, "demo-east", CREATININE_CODE, " ", actor="t"),
        lambda: fixes.ignore_issue(sessions, "no|such|issue", "reason", actor="t"),
        lambda: fixes.undo(console_config, sessions, 999_999, actor="t"),
    ]
    for refusal in refusals:
        with pytest.raises(fixes.FixRefused):
            refusal()
    with pytest.raises(errors.ConfigError):
        fixes.map_code(console_config, sessions, "no-such-site", CREATININE_CODE, "creatinine", actor="t")
    assert override.read_text(encoding="utf-8") == before
