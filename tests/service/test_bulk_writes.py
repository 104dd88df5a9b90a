"""Bulk writes on both store backends: COPY and a bare executemany give what an INSERT gives.

``adapter.store.bulk_insert`` streams a page's new rows with ``COPY`` on
PostgreSQL, and hands them to sqlite3's ``executemany`` as positional rows
on SQLite (SQLAlchemy's per-row parameter building skipped); these tests
hold both to the ordinary SQLAlchemy INSERT: the same values read
back (Python-side defaults filled in, moments converted to UTC), the same
error class for a duplicate key, and the planner statistics refreshed as a
pass loads rows (``adapter.store.planner``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from adapter.store import bulk_insert, db, models, planner

PLUS_FIVE = dt.timezone(dt.timedelta(hours=5))


def source_rows(site: str, count: int, *, with_moment: bool) -> list[dict[str, Any]]:
    rows = []
    for number in range(count):
        row: dict[str, Any] = {
            "site": site,
            "resource_type": "Observation",
            "resource_id": f"obs-{number}",
            "version": str(number),
            "patient_ref": None if number % 3 else f"Patient/p{number}",
            "raw": '{"resourceType": "Observation", "note": "naïve – ünïcode\\ttab"}',
            "catalog_version": "c1",
            "outcome": "mapped",
            "code": None,
            "code_display": "Hémoglobine\nline two",
            "last_seen_run": number,
        }
        if with_moment:
            row["updated_at"] = dt.datetime(2026, 12, 6, 12, number % 60, tzinfo=PLUS_FIVE)
        rows.append(row)
    return rows


def record_bulk_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(way, table) of every bulk write from now on, each still done for real."""
    writes: list[tuple[str, str]] = []
    for way in ("_copy", "_executemany"):
        real = getattr(bulk_insert, way)

        def recording(connection: Any, table: sa.Table, rows: Any, way: str = way, real: Any = real) -> None:
            writes.append((way, table.name))
            real(connection, table, rows)

        monkeypatch.setattr(bulk_insert, way, recording)
    return writes


def stored(sessions: Any, site: str) -> list[tuple[Any, ...]]:
    row = models.SourceResource
    with sessions() as session:
        query = sa.select(row).where(row.site == site).order_by(row.resource_id)
        return [
            (
                r.resource_id,
                r.version,
                r.patient_ref,
                r.raw,
                r.code,
                r.code_display,
                r.last_seen_run,
                r.updated_at,
            )
            for r in session.scalars(query)
        ]


@pytest.mark.parametrize("with_moment", [True, False], ids=["moments-given", "default-moment"])
def test_bulk_rows_read_back_as_an_ordinary_insert_would(
    store_url: str, with_moment: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = db.open_store(store_url)
    bulk_writes = record_bulk_writes(monkeypatch)
    before = dt.datetime.now(dt.UTC)
    with sessions.begin() as session:
        connection = session.connection()
        bulk_insert.insert_rows(
            connection, models.SourceResource, source_rows("bulk", 50, with_moment=with_moment)
        )
        connection.execute(
            sa.insert(models.SourceResource), source_rows("plain", 50, with_moment=with_moment)
        )
    way = "_copy" if store_url.startswith("postgresql") else "_executemany"
    assert bulk_writes == [(way, "source_resources")]
    bulk, plain = stored(sessions, "bulk"), stored(sessions, "plain")
    assert [r[:-1] for r in bulk] == [r[:-1] for r in plain]
    if with_moment:
        assert [r[-1] for r in bulk] == [r[-1] for r in plain]
        assert bulk[0][-1] == dt.datetime(2026, 12, 6, 7, 0, tzinfo=dt.UTC)
    else:
        assert all(r[-1] is not None and r[-1] >= before - dt.timedelta(seconds=1) for r in bulk)


def test_a_duplicate_key_fails_the_whole_bulk_insert_as_an_integrity_error(store_url: str) -> None:
    sessions = db.open_store(store_url)
    with sessions.begin() as session:
        bulk_insert.insert_rows(
            session.connection(), models.SourceResource, source_rows("dup", 1, with_moment=False)
        )
    with pytest.raises(sa.exc.IntegrityError), sessions.begin() as session:
        bulk_insert.insert_rows(
            session.connection(), models.SourceResource, source_rows("dup", 30, with_moment=False)
        )
    assert len(stored(sessions, "dup")) == 1, "nothing of the failed insert was kept"


def test_rows_with_different_keys_take_the_ordinary_insert(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = db.open_store(store_url)
    bulk_writes = record_bulk_writes(monkeypatch)
    rows = source_rows("mixed", 30, with_moment=False)
    rows[7]["updated_at"] = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with sessions.begin() as session:
        bulk_insert.insert_rows(session.connection(), models.SourceResource, rows)
    assert len(stored(sessions, "mixed")) == 30
    assert bulk_writes == [], "a bulk write needs one set of columns"


def test_a_pass_loading_rows_refreshes_the_planner_statistics_on_postgresql(store_url: str) -> None:
    sessions = db.open_store(store_url)
    with sessions.begin() as session:  # enough distinct ids for a histogram longer than a small sample's
        rows = source_rows("stats", 1000, with_moment=False)
        bulk_insert.insert_rows(session.connection(), models.SourceResource, rows)
    statistics = planner.Statistics(sessions)
    statistics.wrote(planner.FIRST_AFTER - 1)
    assert statistics.runs == 0
    statistics.wrote(1)
    statistics.wrote(planner.FIRST_AFTER)  # doubled again since the first: a second run
    statistics.wrote(1)  # not doubled: none
    if not store_url.startswith("postgresql"):
        assert (statistics.enabled, statistics.runs) == (False, 0)
        return
    assert (statistics.enabled, statistics.runs) == (True, 2)
    with sessions() as session:
        analyzed = session.scalar(
            sa.text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'source_resources'")
        )
        bounds = session.scalar(
            sa.text(
                "SELECT array_length(histogram_bounds, 1) FROM pg_stats"
                " WHERE tablename = 'source_resources' AND attname = 'resource_id'"
            )
        )
        target = session.scalar(sa.text("SHOW default_statistics_target"))
    assert analyzed is not None
    # the small sample: a histogram of at most target + 1 bounds, and the session's target untouched
    assert bounds is not None and 2 <= bounds <= planner.STATISTICS_TARGET + 1
    assert target == "100"


def test_a_sqlite_store_connection_is_durable_private_and_checkpoints_rarely(tmp_path: Path) -> None:
    """WAL with synchronous NORMAL, deleted content zeroed, the journal checkpointed every 20,000 pages."""
    sessions = db.open_store(f"sqlite:///{tmp_path / 'state.db'}")
    with sessions() as session:
        connection = session.connection()
        pragmas = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "secure_delete", "wal_autocheckpoint")
        }
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,  # NORMAL
        "secure_delete": 1,
        "wal_autocheckpoint": db.WAL_CHECKPOINT_PAGES,
    }
