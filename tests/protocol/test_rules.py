"""Loading the rules files: the real ones load, bad ones fail naming file, key and reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapter.protocol import rules as rules_mod

from .conftest import MAPPING_DIR


def test_real_files_hold_the_protocol_numbers(rules: rules_mod.ProtocolRules) -> None:
    e = rules.eligibility
    assert (e.screening.window_days, e.screening.anchor) == (28, "enrolment")
    t = e.thresholds
    assert (t.lvef_min, t.creatinine_max, t.alt_max_uln, t.ast_max_uln) == (50, 1.6, 3, 3)
    assert (t.bilirubin_max, t.spo2_above, t.dyspnea_grade_max, t.ecog_max) == (2.0, 91, 1, 1)
    assert e.uln == {"alt": 40, "ast": 40}
    assert (e.room_air.oxygen_flow_max, e.room_air.fio2_max, e.room_air.pairing_minutes) == (0, 21, 60)
    c = rules.cycles
    assert (c.gap_days, c.max_infused_days, c.interruption_days, c.maintenance_cycles) == (7, 28, 1, 4)
    assert (rules.collection.window_min_days, rules.collection.window_max_days) == (3, 14)
    r = rules.reconstitution
    assert (r.wbc_min, r.plt_min, r.max_days_apart) == (3.0, 50.0, 0)
    assert rules.site is None


@pytest.fixture
def mapping_dir(tmp_path: Path) -> Path:
    for name in (rules_mod.ELIGIBILITY_FILE, rules_mod.PROTOCOL_FILE):
        shutil.copy(MAPPING_DIR / name, tmp_path / name)
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_site_table_overrides_central_uln(mapping_dir: Path) -> None:
    with (mapping_dir / "eligibility.toml").open("a", encoding="utf-8") as handle:
        handle.write('\n[uln.demo-east]\nalt = 50.0\n\n[uln."demo north"]\nast = 35\n')
    loaded = rules_mod.load_rules(mapping_dir, site="demo-east")
    assert loaded.site == "demo-east"
    e = loaded.eligibility
    assert e.uln_for("alt", "demo-east") == 50.0
    assert e.uln_for("ast", "demo-east") == 40.0  # not overridden: central value
    assert e.uln_for("ast", "demo north") == 35.0
    assert e.uln_for("alt", "elsewhere") == 40.0


def test_missing_uln_is_none(rules: rules_mod.ProtocolRules) -> None:
    bare = rules.eligibility.model_copy(update={"uln": {}})
    assert bare.uln_for("alt", "demo-east") is None


ERROR_CASES = [
    # file, old text, new text, key named, reason fragment
    ("eligibility.toml", "lvef_min = 50.0", "lvef_mim = 50.0", "thresholds.lvef_mim", "unknown key"),
    ("eligibility.toml", "lvef_min = 50.0", "", "thresholds.lvef_min", "required key is missing"),
    ("eligibility.toml", "window_days = 28", 'window_days = "28"', "screening.window_days", "valid integer"),
    ("eligibility.toml", "window_days = 28", "window_days = -1", "screening.window_days", "greater than"),
    ("eligibility.toml", 'anchor = "enrolment"', 'anchor = "enrollment"', "screening.anchor", "enrolment"),
    ("eligibility.toml", "alt = 40.0", "alt = 0", "uln.alt", "greater than 0"),
    ("eligibility.toml", "ast = 40.0", "ast = 40.0\natl = 40.0", "uln.atl", "'alt' or 'ast'"),
    (
        "eligibility.toml",
        "# [uln.demo-east]\n# alt = 50.0",
        "[uln.demo-east]\nalt = 0",
        "uln.demo-east.alt",
        "greater than 0",
    ),
    ("protocol.toml", "gap_days = 7", "gap_days = 7.5", "cycles.gap_days", "valid integer"),
    ("protocol.toml", "[reconstitution]", "[reconstitutions]", "reconstitutions", "unknown key"),
    ("protocol.toml", "window_min_days = 3", "window_min_days = 30", "collection", "must not be greater"),
]


@pytest.mark.parametrize(("file", "old", "new", "key", "reason"), ERROR_CASES)
def test_bad_file_names_file_key_and_reason(
    mapping_dir: Path, file: str, old: str, new: str, key: str, reason: str
) -> None:
    _edit(mapping_dir / file, old, new)
    with pytest.raises(rules_mod.RulesError) as caught:
        rules_mod.load_rules(mapping_dir)
    error = caught.value
    assert error.file == mapping_dir / file
    assert any(k == key and reason in r for k, r in error.problems), error.problems
    assert str(mapping_dir / file) in str(error)
    assert key in str(error)


def test_missing_file(mapping_dir: Path) -> None:
    (mapping_dir / "protocol.toml").unlink()
    with pytest.raises(rules_mod.RulesError, match=r"protocol\.toml: \(file\): not found"):
        rules_mod.load_rules(mapping_dir)


def test_invalid_toml(mapping_dir: Path) -> None:
    _edit(mapping_dir / "eligibility.toml", "lvef_min = 50.0", "lvef_min = = 50")
    with pytest.raises(rules_mod.RulesError, match=r"eligibility\.toml: \(file\): not valid TOML: .*line"):
        rules_mod.load_rules(mapping_dir)
