"""Per-site locks: one pass per site at a time, across processes, on both backends."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import sqlalchemy as sa

from adapter import config as config_mod
from adapter.service import job
from adapter.store import db, locks, models

HOLD_SCRIPT = """
import sys, time
from adapter.store import locks
from adapter.store import db
lock = locks.try_acquire(db.open_store(sys.argv[1]), sys.argv[2])
print("held" if lock else "busy", flush=True)
time.sleep(60)
"""


def test_a_held_lock_refuses_a_second_holder_until_released(store_url: str) -> None:
    sessions = db.open_store(store_url)
    first = locks.try_acquire(sessions, "site-a")
    assert first is not None
    assert locks.try_acquire(sessions, "site-a") is None
    other = locks.try_acquire(sessions, "site-b")
    assert other is not None, "locks are per site"
    first.release()
    other.release()
    again = locks.try_acquire(sessions, "site-a")
    assert again is not None
    again.release()


def test_a_killed_holder_does_not_block_the_next_process(store_url: str) -> None:
    sessions = db.open_store(store_url)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, store_url, "site-a"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert locks.try_acquire(sessions, "site-a") is None, "another process holds it"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    lock = _eventually(lambda: locks.try_acquire(sessions, "site-a"))
    assert lock is not None, "a dead holder's lock is taken over without waiting for the lease"
    lock.release()


def _eventually(attempt: Callable[[], locks.Lock | None], seconds: float = 5) -> locks.Lock | None:
    """PostgreSQL notices a killed client's closed socket within moments, not instantly."""
    deadline = time.monotonic() + seconds
    while True:
        lock = attempt()
        if lock is not None or time.monotonic() > deadline:
            return lock
        time.sleep(0.05)


def _stale_row(store_url: str, heartbeat: dt.datetime, holder: str) -> None:
    engine = db.open_store(store_url).kw["bind"]
    with engine.begin() as connection:
        connection.execute(
            sa.insert(models.SiteLock).values(
                site="site-a", holder=holder, acquired_at=heartbeat, heartbeat_at=heartbeat
            )
        )


def test_an_expired_lease_is_taken_over_and_a_fresh_one_is_not(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    sessions = db.open_store(url)
    now = dt.datetime.now(dt.UTC)
    _stale_row(url, now - dt.timedelta(seconds=30), "elsewhere.example:4242:abc")
    assert locks.try_acquire(sessions, "site-a") is None, "a live lease on another host is respected"
    with sessions.begin() as session:
        session.execute(sa.update(models.SiteLock).values(heartbeat_at=now - locks.LEASE * 2))
    lock = locks.try_acquire(sessions, "site-a")
    assert lock is not None, "an expired lease is taken over"
    lock.release()


def test_a_lease_taken_over_elsewhere_is_reported_lost(tmp_path: object) -> None:
    sessions = db.open_store(f"sqlite:///{tmp_path}/state.db")
    lock = locks.try_acquire(sessions, "site-a")
    assert isinstance(lock, locks.LeaseLock)
    with sessions.begin() as session:
        session.execute(sa.update(models.SiteLock).values(holder="elsewhere.example:1:x"))
    assert lock._renew() is False
    assert lock.lost, "the pass holding it must stop"
    lock.release()
    with sessions() as session:
        assert session.scalar(sa.select(models.SiteLock.holder)) == "elsewhere.example:1:x", (
            "release spares the new holder"
        )


def test_run_once_skips_a_site_another_process_is_syncing(
    store_url: str, demo_on: Callable[[str], config_mod.Config]
) -> None:
    config = demo_on(store_url)
    sessions = db.open_store(store_url)
    busy_site = config.sites[0]
    lock = locks.try_acquire(sessions, busy_site.id)
    assert lock is not None
    try:
        result = job.run_once(config, [busy_site])
    finally:
        lock.release()
    assert result.busy == [busy_site.id]
    assert result.syncs == []
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(models.SyncRun)) == 0


def test_advisory_lock_keys_are_stable_and_distinct() -> None:
    keys = {locks.AdvisoryLock.key(name) for name in ("demo-north", "demo-east", locks.OUTBOX)}
    assert len(keys) == 3
    assert locks.AdvisoryLock.key("demo-north") == locks.AdvisoryLock.key("demo-north")
    assert all(-(2**63) <= key < 2**63 for key in keys)


def test_a_pass_left_running_by_a_crash_is_marked_interrupted(
    tmp_path: object, demo_on: Callable[[str], config_mod.Config]
) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    config = demo_on(url)
    sessions = db.open_store(url)
    with sessions.begin() as session:
        session.add(models.SyncRun(site=config.sites[0].id, outcome="running"))
    job.run_once(config, config.sites[:1], deliver=False)
    with sessions() as session:
        outcomes = list(session.scalars(sa.select(models.SyncRun.outcome).order_by(models.SyncRun.id)))
    assert outcomes == ["interrupted", "ok"]
