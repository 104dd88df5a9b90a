"""The store on SQLite and on a real PostgreSQL 15: the same demo run gives the same outputs.

Each test runs once per backend (``store_url``).  Comparing both with the
golden files makes them identical to each other: records, issues, and what a
second pass or a crash-and-resume sends.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from adapter import config as config_mod
from adapter.cli.main import main
from adapter.service import job, status
from adapter.store import db, models, schema

import pgserver
from golden import golden_issues, golden_records, issue_list, repository_records
from support import crash_mid_sync_then_resume

MakeConfig = Callable[[str], config_mod.Config]


def test_demo_run_matches_the_golden_files(store_url: str, demo_on: MakeConfig) -> None:
    config = demo_on(store_url)
    first = job.run_once(config, config.sites)
    assert repository_records(config) == golden_records()
    assert issue_list(config) == golden_issues()
    assert first.delivery is not None and first.delivery.delivered == sum(
        len(v) for v in golden_records().values()
    )

    second = job.run_once(config, config.sites)
    assert second.delivery is not None and second.delivery.delivered == 0
    assert all(s.resources_mapped == 0 and s.upserts == 0 and s.retractions == 0 for s in second.syncs)

    snapshot = status.snapshot(db.open_store(store_url), config)
    assert [s.last_run.outcome for s in snapshot.sites if s.last_run] == ["ok", "ok"]
    assert snapshot.outbox_pending == 0
    assert all(
        set(s.watermarks) == {"Observation", "MedicationAdministration", "Procedure"} for s in snapshot.sites
    )


def test_crash_mid_sync_resumes_to_the_same_repository(
    store_url: str, demo_on: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = demo_on(store_url)
    crash_mid_sync_then_resume(config, monkeypatch)
    assert repository_records(config) == golden_records()
    with db.open_store(store_url)() as session:
        sent = session.scalar(sa.select(sa.func.count()).select_from(models.OutboxItem))
        outcomes = list(session.scalars(sa.select(models.SyncRun.outcome).order_by(models.SyncRun.id)))
    assert sent == sum(len(v) for v in golden_records().values()), "nothing enqueued twice"
    assert "failed" in outcomes and outcomes[-2:] == ["ok", "ok"]


def test_db_upgrade_and_current(
    store_url: str, demo_on: MakeConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    config = demo_on(store_url)
    path = config.repository.path.parent / "trial-adapter.toml"
    path.write_text(
        f'[store]\nurl = "{store_url}"\n[[sites]]\nid = "a"\ntimezone = "UTC"\nroster = "r.csv"\n'
        '[sites.source]\nkind = "ndjson"\npath = "data"\n[repository]\nkind = "file"\npath = "out"\n'
    )
    assert main(["db", "current", "-c", str(path)]) == 0
    assert "revision (empty)" in capsys.readouterr().out
    assert main(["db", "upgrade", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    _, head = schema.revisions(db.create_engine(store_url))
    assert f"to {head}" in out
    assert pgserver.PASSWORD not in out, "the database password is never shown"
    assert main(["db", "upgrade", "-c", str(path)]) == 0
    assert f"already at revision {head}" in capsys.readouterr().out
    assert main(["db", "current", "-c", str(path)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_an_unreachable_database_is_exit_code_6(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    path = f"{tmp_path}/trial-adapter.toml"
    with open(path, "w") as handle:
        handle.write(
            '[store]\nurl = "postgresql://adapter:hunter2@127.0.0.1:1/adapter"\n[[sites]]\nid = "a"\n'
            'timezone = "UTC"\nroster = "r.csv"\n[sites.source]\nkind = "ndjson"\npath = "data"\n'
            '[repository]\nkind = "file"\npath = "out"\n'
        )
    assert main(["db", "upgrade", "-c", path]) == 6
    err = capsys.readouterr().err
    assert "cannot open the state database" in err
    assert "hunter2" not in err


def test_the_migrations_build_exactly_the_models(store_url: str) -> None:
    """A model change without its migration (an index, a column) would only show at a site's upgrade."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = db.create_engine(store_url)
    schema.upgrade(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), models.Base.metadata)
    assert differences == []


def test_a_switched_repository_gets_every_current_record_once(store_url: str, demo_on: MakeConfig) -> None:
    """``push --resend``'s bookkeeping (adapter.delivery.redelivery) on each backend."""
    from adapter.delivery import redelivery

    config = demo_on(store_url)
    job.run_once(config, config.sites)
    moved = config.model_copy(
        update={
            "repository": config.repository.model_copy(update={"path": config.repository.path.parent / "new"})
        }
    )
    sessions = db.open_store(store_url)
    change = job.repository_change(moved, sessions)
    records = sum(len(v) for v in golden_records().values())
    assert change is not None and change.owed == records
    assert redelivery.resend(moved, sessions).queued == records
    assert redelivery.resend(moved, sessions).queued == 0, "twice queues nothing"
    drained = job.deliver_outbox(moved, sessions)
    assert drained is not None and drained.delivered == records and drained.retrying == 0
    assert repository_records(moved) == golden_records()
    assert job.repository_change(moved, sessions) is None
