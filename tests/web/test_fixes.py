"""adapter.reconciliation at the file level: override edits keep comments; bad fixes change nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from adapter import config as config_mod
from adapter import errors
from adapter.mapping import overrides
from adapter.reconciliation import actions, fixes, undoing
from adapter.service import job
from adapter.store import db, locks, models

from .conftest import CREATININE_CODE, fix_file

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
    assert overrides.set_override(path, "codes", "http://lab.example|2", "platelets", note="by dana") is None
    assert overrides.set_override(path, "units", "umol/l", "umol/L") is None
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[3:6] == [
        '"http://lab.example|1" = "wbc"   # 白细胞',
        '"http://lab.example|2" = "platelets"  # by dana',
        "# a comment about the next table",
    ]
    assert lines[lines.index("[units]") + 1] == '"umol/l" = "umol/L"'
    assert overrides.set_override(path, "codes", "http://lab.example|2", None) == "platelets"
    assert overrides.set_override(path, "units", "umol/l", None) == "umol/L"
    assert path.read_text(encoding="utf-8") == EAST


def test_changing_an_entry_keeps_its_place_and_a_missing_file_or_table_is_created(tmp_path: Path) -> None:
    path = tmp_path / "east.toml"
    path.write_text(EAST, encoding="utf-8")
    assert overrides.set_override(path, "codes", "http://lab.example|1", "platelets") == "wbc"
    assert overrides.read_override(path)["codes"] == {"http://lab.example|1": "platelets"}
    fresh = tmp_path / "new-site.toml"
    overrides.set_override(fresh, "ignored_codes", "s|c", "not needed")
    assert overrides.read_override(fresh)["ignored_codes"] == {"s|c": "not needed"}
    bare = tmp_path / "bare.toml"
    bare.write_text("# only a comment\n", encoding="utf-8")
    overrides.set_override(bare, "units", "u", "mg/dL")
    assert bare.read_text(encoding="utf-8").startswith("# only a comment\n")
    assert overrides.read_override(bare)["units"] == {"u": "mg/dL"}


def test_fixes_that_cannot_work_are_refused_before_anything_is_written(
    console_config: config_mod.Config,
) -> None:
    sessions = db.open_store(console_config.store.url)
    shipped = console_config.study.mappings / "sites" / "demo-east.toml"
    before = shipped.read_text(encoding="utf-8")
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
        lambda: undoing.undo(console_config, sessions, 999_999, actor="t"),
    ]
    for refusal in refusals:
        with pytest.raises(actions.FixRefused):
            refusal()
    with pytest.raises(errors.ConfigError):
        fixes.map_code(console_config, sessions, "no-such-site", CREATININE_CODE, "creatinine", actor="t")
    assert shipped.read_text(encoding="utf-8") == before
    assert not fix_file(console_config).exists()


def test_a_fix_names_its_file_and_never_writes_the_mapping_folder(console_config: config_mod.Config) -> None:
    sessions = db.open_store(console_config.store.url)
    shipped = console_config.study.mappings / "sites" / "demo-east.toml"
    before = shipped.read_text(encoding="utf-8")
    result = fixes.map_code(console_config, sessions, "demo-east", CREATININE_CODE, "creatinine", actor="t")
    assert result.file == str(fix_file(console_config))
    assert overrides.read_override(fix_file(console_config))["codes"] == {CREATININE_CODE: "creatinine"}
    assert shipped.read_text(encoding="utf-8") == before
    state_folder = Path(console_config.store.url.removeprefix("sqlite:///")).parent
    assert fix_file(console_config).parent == state_folder / "mapping-overrides"


def test_an_unwritable_fix_folder_is_a_config_error_that_names_it(
    console_config: config_mod.Config, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    config = console_config.model_copy(
        update={"study": console_config.study.model_copy(update={"overrides": blocker / "fixes"})}
    )
    sessions = db.open_store(config.store.url)
    with pytest.raises(errors.ConfigError, match=r"not-a-folder.*\[study\] overrides"):
        fixes.map_code(config, sessions, "demo-east", CREATININE_CODE, "creatinine", actor="t")
    held = locks.try_acquire(sessions, "demo-east")  # the refusal left no lock behind
    assert held is not None
    with held:
        pass


def test_a_fix_names_a_central_code_by_its_short_system_name_and_is_refused(
    console_config: config_mod.Config,
) -> None:
    """``loinc|1742-6`` is the catalog's own spelling of an ALT code: a site cannot remap it."""
    sessions = db.open_store(console_config.store.url)
    with pytest.raises(actions.FixRefused, match=r"central concepts\.toml"):
        fixes.map_code(console_config, sessions, "demo-east", "loinc|1742-6", "creatinine", actor="t")
    assert not fix_file(console_config).exists()


def test_the_first_fix_after_an_upgrade_moves_the_old_fixes_and_does_not_hang(
    console_config: config_mod.Config,
) -> None:
    """The move takes the fix folder's lock itself; a fix must not hold that lock around it."""
    sessions = db.open_store(console_config.store.url)
    old_file = str(console_config.study.mappings / "sites" / "demo-east.toml")
    with sessions.begin() as session:
        detail = {"site": "demo-east", "file": old_file, "table": "units", "key": "umol/l", "after": "umol/L"}
        session.add(models.AuditEntry(actor="old", action=actions.MAP_UNIT, target="x", detail=detail))
    done: list[actions.FixResult] = []
    worker = threading.Thread(
        target=lambda: done.append(
            fixes.map_code(console_config, sessions, "demo-east", CREATININE_CODE, "creatinine", actor="t")
        ),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=120)
    assert done, "the fix hung (or failed) while moving the old fixes"
    moved = overrides.read_override(fix_file(console_config))
    assert moved["units"] == {"umol/l": "umol/L"} and moved["codes"] == {CREATININE_CODE: "creatinine"}


def test_fixes_made_in_the_old_place_move_into_the_site_fix_file_once(
    console_config: config_mod.Config, caplog: pytest.LogCaptureFixture
) -> None:
    """A site upgrading from a version that wrote fixes into the mapping folder keeps them all."""
    sessions = db.open_store(console_config.store.url)
    old_file = str(console_config.study.mappings / "sites" / "demo-east.toml")
    undone_key = "http://hospital-east.example/fhir/lis|0099"
    ids: list[int] = []
    with sessions.begin() as session:
        for action, detail in [
            (actions.MAP_CODE, {"table": "codes", "key": CREATININE_CODE, "after": "creatinine"}),
            (actions.IGNORE_CODE, {"table": "ignored_codes", "key": undone_key, "after": "sodium"}),
            (actions.UNDO, {"table": "ignored_codes", "key": undone_key, "after": None}),
            (actions.MAP_UNIT, {"table": "units", "key": "umol/l", "after": "umol/L"}),
        ]:
            target = f"audit:{ids[-1]}" if action == actions.UNDO else f"demo-east:{detail['key']}"
            detail = {"site": "demo-east", "file": old_file, "before": None, **detail}
            entry = models.AuditEntry(actor="old", action=action, target=target, detail=detail)
            session.add(entry)
            session.flush()
            ids.append(entry.id)
    with caplog.at_level("WARNING"):
        job.run_once(console_config, [console_config.site("demo-east")], deliver=False)
    moved = overrides.read_override(fix_file(console_config))
    assert moved["codes"] == {CREATININE_CODE: "creatinine"} and moved["units"] == {"umol/l": "umol/L"}
    assert moved["ignored_codes"] == {}
    assert any("fixes moved" in record.getMessage() for record in caplog.records)
    with sessions() as session:
        issue = session.get(models.IssueRow, f"demo-east|unknown_code|code:{CREATININE_CODE}")
        assert issue is not None and issue.status == "resolved"  # the moved fix took effect
    undoing.undo(console_config, sessions, ids[0], actor="t")  # an old fix can still be undone
    assert overrides.read_override(fix_file(console_config))["codes"] == {}
    job.run_once(console_config, [console_config.site("demo-east")], deliver=False)
    assert overrides.read_override(fix_file(console_config))["codes"] == {}  # moved once, never again


def test_a_fix_queues_only_the_records_whose_content_changed(console_config: config_mod.Config) -> None:
    """The catalog version is provenance: a fix re-stamps every record's catalog but re-sends one."""
    sessions = db.open_store(console_config.store.url)
    job.deliver_outbox(console_config, sessions)
    with sessions() as session:
        site_records = session.scalar(
            sa.select(sa.func.count()).where(
                models.RecordRow.site == "demo-east", ~models.RecordRow.retracted
            )
        )
        last = session.scalar(sa.select(sa.func.max(models.OutboxItem.id))) or 0
    result = fixes.map_code(console_config, sessions, "demo-east", CREATININE_CODE, "creatinine", actor="t")
    with sessions() as session:
        queued = session.execute(
            sa.select(models.OutboxItem.record_type, models.OutboxItem.payload).where(
                models.OutboxItem.id > last
            )
        ).all()
    assert result.records_changed == len(queued) >= 1
    assert len(queued) < (site_records or 0)  # not every record of the site
    assert {record_type for record_type, _ in queued} == {"EligibilityAssessment"}
    assert result.records_by_type == {"EligibilityAssessment": len(queued)}
    # what is sent carries the new catalog version, as provenance of the new content
    assert all(orjson.loads(payload)["catalog_version"] != "" for _, payload in queued)
    job.run_once(console_config, [console_config.site("demo-east")])
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.max(models.OutboxItem.id))) == last + len(queued)
