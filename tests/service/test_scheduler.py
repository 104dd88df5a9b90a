"""The schedule: which jobs exist, how they are configured, and that a restart keeps their place."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from adapter import config as config_mod
from adapter import errors
from adapter.service import scheduler
from adapter.store import db

from support import minimal_config


def make_config(
    tmp_path: Path, sites: tuple[str, ...] = ("north", "east"), **schedule: object
) -> config_mod.Config:
    raw = minimal_config(schedule={"timezone": "Europe/Berlin", **schedule})
    raw["sites"] = [{**raw["sites"][0], "id": site} for site in sites]
    return config_mod.config_from_dict(raw, base_dir=tmp_path)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[object]:
    """``store()``: a started (paused) scheduler on one SQLite job store; call again to "restart"."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    db.open_store(url)
    running: list[BackgroundScheduler] = []

    def start() -> BackgroundScheduler:
        for old in running:
            old.shutdown(wait=False)
        running.clear()
        instance = scheduler.build(db.create_engine(url), workers=1, tz=dt.UTC)
        instance.start(paused=True)
        running.append(instance)
        return instance

    yield start
    for old in running:
        old.shutdown(wait=False)


def test_one_sync_and_one_sweep_per_site_and_one_delivery(tmp_path: Path) -> None:
    jobs = {job.id: job for job in scheduler.plan(make_config(tmp_path))}
    assert set(jobs) == {"sync:north", "sweep:north", "sync:east", "sweep:east", "deliver"}
    assert jobs["sweep:east"].kwargs == {"site_id": "east", "full": True}
    assert jobs["sync:east"].kwargs == {"site_id": "east"}
    assert str(jobs["sync:east"].trigger) == "interval[1:00:00]"
    assert isinstance(jobs["sweep:east"].trigger, CronTrigger)


def test_jobs_run_once_at_a_time_and_coalesce(tmp_path: Path, store: object) -> None:
    sched = store()  # type: ignore[operator]
    now = dt.datetime.now(dt.UTC)
    scheduler.apply(sched, scheduler.plan(make_config(tmp_path)), now=now)
    sync = sched.get_job("sync:north")
    assert (sync.max_instances, sync.coalesce, sync.misfire_grace_time) == (1, True, None)
    assert sync.next_run_time == now, "a new site syncs at once, not an interval later"
    sweep = sched.get_job("sweep:north")
    assert sweep.next_run_time.astimezone(dt.UTC) > now
    local = sweep.next_run_time.astimezone(scheduler.timezone(make_config(tmp_path).schedule))
    assert (local.hour, local.minute) == (2, 30), "the sweep is nightly, in the configured timezone"
    assert sweep.misfire_grace_time == scheduler.SWEEP_GRACE.total_seconds()


def test_a_restart_keeps_each_job_in_its_place(tmp_path: Path, store: object) -> None:
    config = make_config(tmp_path)
    first = store()  # type: ignore[operator]
    scheduler.apply(first, scheduler.plan(config))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=40)
    first.modify_job("sync:north", next_run_time=later)
    sweep_at = first.get_job("sweep:north").next_run_time

    second = store()  # type: ignore[operator]
    scheduler.apply(second, scheduler.plan(config))
    assert second.get_job("sync:north").next_run_time == later
    assert second.get_job("sweep:north").next_run_time == sweep_at

    third = store()  # type: ignore[operator]
    now = dt.datetime.now(dt.UTC)
    scheduler.apply(third, scheduler.plan(config), run_now={"sync:north"}, now=now)
    assert third.get_job("sync:north").next_run_time == now, "an interrupted site resumes at once"


def test_a_changed_schedule_or_site_list_replans(tmp_path: Path, store: object) -> None:
    sched = store()  # type: ignore[operator]
    scheduler.apply(sched, scheduler.plan(make_config(tmp_path)))
    sched.modify_job("sync:north", next_run_time=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    changed = make_config(tmp_path, sites=("north",), sync_cron="*/15 * * * *")
    now = dt.datetime.now(dt.UTC)
    scheduler.apply(sched, scheduler.plan(changed), now=now)
    assert {job.id for job in sched.get_jobs()} == {"sync:north", "sweep:north", "deliver"}
    job = sched.get_job("sync:north")
    assert isinstance(job.trigger, CronTrigger) and job.next_run_time == now


def test_next_runs_are_read_from_the_job_store_by_another_process(tmp_path: Path, store: object) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    sched = store()  # type: ignore[operator]
    scheduler.apply(sched, scheduler.plan(make_config(tmp_path)))
    runs = scheduler.next_runs(db.create_engine(url))
    assert set(runs) == {job.id for job in sched.get_jobs()}
    assert runs["sweep:east"] == sched.get_job("sweep:east").next_run_time
    assert scheduler.next_runs(db.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")) == {}


def test_the_sync_interval_of_a_crontab_line_is_its_longest_gap(tmp_path: Path) -> None:
    now = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
    office_hours = make_config(tmp_path, sync_cron="*/30 6-22 * * *").schedule
    assert scheduler.sync_interval(office_hours, now) == dt.timedelta(hours=7, minutes=30)
    assert scheduler.sync_interval(
        make_config(tmp_path, sync_interval_minutes=15).schedule, now
    ) == dt.timedelta(minutes=15)


def test_a_fired_job_goes_to_the_bound_service() -> None:
    calls: list[tuple[str, object]] = []

    class Runner:
        def sync(self, site_id: str, *, full: bool) -> None:
            calls.append((site_id, full))

        def deliver(self) -> None:
            calls.append(("deliver", None))

    scheduler.bind(Runner())
    try:
        scheduler.run_sync("north")
        scheduler.run_sync("north", full=True)
        scheduler.run_delivery()
    finally:
        scheduler.bind(None)
    scheduler.run_sync("north")  # no service: logged and ignored, never raised into APScheduler
    assert calls == [("north", False), ("north", True), ("deliver", None)]


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"sync_cron": "every hour"}, "schedule.sync_cron: 'every hour' is not a crontab line"),
        ({"sweep_cron": "99 2 * * *"}, "schedule.sweep_cron"),
        ({"timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"sync_interval_minutes": 0}, "1 to 10080"),
    ],
)
def test_schedule_errors_name_the_key_and_the_fix(
    tmp_path: Path, schedule: dict[str, object], message: str
) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        config_mod.config_from_dict(minimal_config(schedule=schedule), base_dir=tmp_path)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("service", "message"),
    [
        (
            {"listen": "localhost"},
            'expected host:port of the health and metrics endpoint, e.g. "127.0.0.1:9477"',
        ),
        ({"stale_after_intervals": 0}, "service.stale_after_intervals"),
        ({"listne": "x"}, "service.listne: is not a known setting"),
    ],
)
def test_service_errors_name_the_key_and_the_fix(
    tmp_path: Path, service: dict[str, object], message: str
) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        config_mod.config_from_dict(minimal_config(service=service), base_dir=tmp_path)
    assert message in str(caught.value)
