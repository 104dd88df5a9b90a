"""An emptied export retracts nothing until a person says the deletion is real.

Each test runs the real CLI on a copy of the demo data, then truncates,
removes or thins out an export file the way a failed export job would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from typer.testing import CliRunner

from adapter import errors
from adapter.cli import main
from adapter.demo import site as demo_site
from adapter.service import metrics
from adapter.store import db, models
from adapter.sync import retraction_guard

from golden import repository_records
from support import demo_sandbox

runner = CliRunner()
HELD_KEY = "demo-east|retraction_held|retire:MedicationAdministration"


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A demo config file over a copy of the demo data, synced once; returns the config path."""
    demo_sandbox(tmp_path)
    config = tmp_path / "work" / demo_site.CONFIG_NAME
    assert sync(config).exit_code == 0
    return config


def sync(config: Path, *extra: str) -> object:
    return runner.invoke(main.app, ["sync", "-c", str(config), "-q", *extra])


def east_export(config: Path, resource_type: str) -> Path:
    return config.parent.parent / "data" / "demo-east" / f"{resource_type}.ndjson"


def cycles(config: Path) -> list[dict[str, object]]:
    records = repository_records(demo_site.demo_config(config.parent, data_dir=config.parent.parent / "data"))
    return [r for r in records.get("TreatmentCycle.ndjson", []) if r.get("site") == "demo-east"]


def issue(config: Path, key: str) -> models.IssueRow | None:
    sessions = db.open_store(f"sqlite:///{config.parent / 'state.db'}")
    with sessions() as session:
        return session.get(models.IssueRow, key)


def test_an_emptied_export_file_retracts_nothing_and_says_so(sandbox: Path) -> None:
    before = cycles(sandbox)
    assert before, "the demo site has treatment cycles to lose"
    export = east_export(sandbox, "MedicationAdministration")
    saved = export.read_bytes()
    export.write_bytes(b"")

    result = sync(sandbox)
    assert result.exit_code == errors.EXIT_RETRACTION_HELD, result.output  # type: ignore[attr-defined]
    output = " ".join(result.output.split())  # type: ignore[attr-defined]
    assert "held back" in output and "MedicationAdministration" in output and "accept-retraction" in output
    assert cycles(sandbox) == before
    held = issue(sandbox, HELD_KEY)
    assert held is not None and held.status == "open" and held.subject_id is None
    stored = len(saved.splitlines())
    assert f"no longer lists {stored} of the {stored} stored MedicationAdministration" in held.detail

    export.write_bytes(saved)  # the export job ran again
    assert sync(sandbox).exit_code == 0
    assert cycles(sandbox) == before
    held = issue(sandbox, HELD_KEY)
    assert held is not None and held.status == "resolved"


def test_a_missing_export_file_is_held_back_too(sandbox: Path) -> None:
    before = cycles(sandbox)
    east_export(sandbox, "MedicationAdministration").unlink()
    assert sync(sandbox).exit_code == errors.EXIT_RETRACTION_HELD
    assert cycles(sandbox) == before


def test_an_accepted_deletion_is_retracted_by_the_next_pass_and_audited(sandbox: Path) -> None:
    export = east_export(sandbox, "MedicationAdministration")
    export.write_bytes(b"")
    assert sync(sandbox).exit_code == errors.EXIT_RETRACTION_HELD
    args = ["accept-retraction", "-c", str(sandbox), "--site", "demo-east"]
    args += ["--type", "MedicationAdministration"]
    accepted = runner.invoke(main.app, [*args, "--reason", "the pharmacy system was replaced", "--as", "it"])
    assert accepted.exit_code == 0, accepted.output
    assert "the next sync of demo-east retracts up to" in " ".join(accepted.output.split())

    assert sync(sandbox).exit_code == 0
    assert cycles(sandbox) == []
    held = issue(sandbox, HELD_KEY)
    assert held is not None and held.status == "resolved"
    sessions = db.open_store(f"sqlite:///{sandbox.parent / 'state.db'}")
    with sessions() as session:
        audit = session.scalars(
            sa.select(models.AuditEntry).where(models.AuditEntry.action == retraction_guard.ACCEPT_ACTION)
        ).one()
        assert audit.actor == "it" and audit.detail["reason"] == "the pharmacy system was replaced"
        approval = session.scalars(sa.select(models.RetractionApproval)).one()
        assert approval.consumed_at is not None  # used up: a later loss is held again
    again = runner.invoke(main.app, [*args, "--reason", "again"])
    assert again.exit_code == errors.EXIT_USAGE
    assert "no retraction of MedicationAdministration" in again.output


def test_an_approval_is_used_up_by_the_next_pass_whatever_it_finds(sandbox: Path) -> None:
    export = east_export(sandbox, "MedicationAdministration")
    saved = export.read_bytes()
    export.write_bytes(b"")
    assert sync(sandbox).exit_code == errors.EXIT_RETRACTION_HELD
    args = ["accept-retraction", "-c", str(sandbox), "-s", "demo-east", "-t", "MedicationAdministration"]
    assert runner.invoke(main.app, [*args, "-r", "looked real"]).exit_code == 0
    export.write_bytes(saved)  # it was a broken export after all
    assert sync(sandbox).exit_code == 0
    export.write_bytes(b"")  # months later it breaks again: the old yes does not cover it
    assert sync(sandbox).exit_code == errors.EXIT_RETRACTION_HELD
    assert cycles(sandbox)


def test_a_single_deletion_still_retracts_at_once(sandbox: Path) -> None:
    export = east_export(sandbox, "Observation")
    lines = export.read_bytes().splitlines(keepends=True)
    export.write_bytes(b"".join(lines[1:]))
    assert sync(sandbox).exit_code == 0
    assert issue(sandbox, "demo-east|retraction_held|retire:Observation") is None


def test_more_than_the_allowed_share_is_held_back(sandbox: Path) -> None:
    export = east_export(sandbox, "Observation")
    lines = export.read_bytes().splitlines(keepends=True)
    cut = max(2, len(lines) // 10)  # 10 %: above the default 5 %
    export.write_bytes(b"".join(lines[cut:]))
    assert sync(sandbox).exit_code == errors.EXIT_RETRACTION_HELD
    held = issue(sandbox, "demo-east|retraction_held|retire:Observation")
    assert held is not None and held.value == str(cut)
    registry = CollectorRegistry()
    registry.register(metrics.StoreCollector(db.open_store(f"sqlite:///{sandbox.parent / 'state.db'}"), []))
    exposition = generate_latest(registry).decode()
    expected = f'trial_adapter_retractions_held{{resource_type="Observation",site="demo-east"}} {cut}.0'
    assert expected in exposition


def test_the_share_is_configurable() -> None:
    counts = retraction_guard.Vanished("Observation", stored=100, vanished=8)
    assert retraction_guard.is_suspicious(counts, 0.05)
    assert not retraction_guard.is_suspicious(counts, 0.10)
    assert retraction_guard.is_suspicious(retraction_guard.Vanished("Procedure", 2, 2), 1.0)
    assert not retraction_guard.is_suspicious(retraction_guard.Vanished("Procedure", 1, 1), 0.05)
