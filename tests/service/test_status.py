"""``status`` after a crash (issue 13, item 9): the truth about dead processes.

After ``kill -9`` the database still says the pass is ``running`` and the job
store still holds the next run times.  ``status`` asks the locks instead: a
pass whose site lock no live process holds is ``interrupted``, and without a
live service there is no next-sync countdown.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter.cli.main import main
from adapter.service import scheduler, status
from adapter.store import db, locks, models
from adapter.web import site_health

TRIAL_ADAPTER = str(Path(sys.executable).parent / "trial-adapter")
MakeConfig = Callable[[str], config_mod.Config]

HOLD_SCRIPT = """
import sys, time
from adapter.store import locks
from adapter.store import db
lock = locks.try_acquire(db.open_store(sys.argv[1]), sys.argv[2])
print("held" if lock else "busy", flush=True)
time.sleep(120)
"""


def _shown(sessions: sessionmaker[Session], config: config_mod.Config, site: str) -> status.SiteStatus:
    return next(s for s in status.snapshot(sessions, config).sites if s.site == site)


def _console_shows(sessions: sessionmaker[Session], site: str) -> str:
    """The last run's outcome as the console's site page shows it."""
    with sessions() as session:
        health = site_health.site_health(session, site)
        assert health.last_run is not None
        return health.outcome(health.last_run)


def _hold(url: str, name: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, url, name], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def _kill(process: subprocess.Popen[Any]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def _eventually(condition: Callable[[], bool], seconds: float = 10) -> bool:
    """PostgreSQL notices a killed client's closed socket within moments, not instantly."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_running_pass_whose_holder_was_killed_shows_as_interrupted(
    store_url: str, demo_on: MakeConfig
) -> None:
    config = demo_on(store_url)
    sessions = db.open_store(store_url)
    site = config.sites[0].id
    holder = _hold(store_url, site)
    try:
        with sessions.begin() as session:
            session.add(models.SyncRun(site=site, outcome="running"))
        run = _shown(sessions, config, site).last_run
        assert run is not None and run.outcome == "running", "a live holder's pass is running"
        assert _console_shows(sessions, site) == "running"
    finally:
        _kill(holder)
    assert _eventually(
        lambda: getattr(_shown(sessions, config, site).last_run, "outcome", "") == "interrupted"
    )
    assert _console_shows(sessions, site) == "interrupted", "the site page agrees with status"
    with sessions() as session:
        stored = session.scalar(sa.select(models.SyncRun.outcome))
    assert stored == "running", "status only reads; the next pass of the site closes the row"


def test_lease_holders_alive_or_gone(tmp_path: Path, demo_on: MakeConfig) -> None:
    """The SQLite lease row: same host by process id, another host by the age of its heartbeat."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = demo_on(url)
    sessions = db.open_store(url)
    site = config.sites[0].id
    with sessions.begin() as session:
        session.add(models.SyncRun(site=site, outcome="running"))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    now = dt.datetime.now(dt.UTC)
    here = socket.gethostname()[:120]
    cases = [
        (f"{here}:{os.getpid()}:x", now, "running"),
        (f"{here}:{int(gone.stdout)}:x", now, "interrupted"),
        ("elsewhere.example:4242:x", now - dt.timedelta(seconds=30), "running"),
        ("elsewhere.example:4242:x", now - locks.LEASE * 2, "interrupted"),
    ]
    for holder, heartbeat, expected in cases:
        with sessions.begin() as session:
            session.execute(sa.delete(models.SiteLock))
            session.add(
                models.SiteLock(site=site, holder=holder, acquired_at=heartbeat, heartbeat_at=heartbeat)
            )
        run = _shown(sessions, config, site).last_run
        assert run is not None and run.outcome == expected, holder


def test_no_countdown_without_a_live_service(store_url: str, demo_on: MakeConfig) -> None:
    config = demo_on(store_url)
    sessions = db.open_store(store_url)
    jobs = scheduler.build(db.create_engine(store_url), workers=1, tz=dt.UTC)
    jobs.start(paused=True)
    scheduler.apply(jobs, scheduler.plan(config))
    jobs.shutdown(wait=False)  # the job store keeps the next run times, as after a kill -9

    service = _hold(store_url, locks.SERVICE)  # what `trial-adapter run` holds while it runs
    try:
        up = status.snapshot(sessions, config)
        assert up.service_running and up.next_delivery is not None
        assert all(site.next_sync and site.next_sweep for site in up.sites)
    finally:
        _kill(service)
    assert _eventually(lambda: not status.snapshot(sessions, config).service_running)
    down = status.snapshot(sessions, config)
    assert down.schedule_known and down.next_delivery is None
    assert all(site.next_sync is None and site.next_sweep is None for site in down.sites)


def test_sync_once_killed_mid_pass_then_status_json_says_interrupted(
    big_demo_data: Path, config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(data=big_demo_data)
    config = config_mod.load_config(path)
    sessions = db.open_store(config.store.url)
    sync = subprocess.Popen(
        [TRIAL_ADAPTER, "sync", "--once", "--quiet", "-c", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _eventually(lambda: _first_page_committed(sessions), 60), "the pass never committed a page"
        capsys.readouterr()
        assert main(["status", "--json", "-c", str(path)]) == 0
        during = orjson.loads(capsys.readouterr().out)
        assert "running" in [s["last_run"]["outcome"] for s in during["sites"] if s["last_run"]]
    finally:
        _kill(sync)
    assert sync.returncode == -signal.SIGKILL, "killed in the middle of the pass"

    assert main(["status", "--json", "-c", str(path)]) == 0
    after = orjson.loads(capsys.readouterr().out)
    outcomes = [s["last_run"]["outcome"] for s in after["sites"] if s["last_run"]]
    assert "interrupted" in outcomes and "running" not in outcomes
    assert after["service_running"] is False
    assert all(s["next_sync"] is None for s in after["sites"])
    assert main(["status", "-c", str(path)]) == 0
    assert "interrupted" in capsys.readouterr().out


def _first_page_committed(sessions: sessionmaker[Session]) -> bool:
    with sessions() as session:
        return bool(session.scalar(sa.select(sa.func.count()).select_from(models.SourceResource)))
