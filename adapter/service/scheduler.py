"""The schedule: which jobs exist, when they fire, and where APScheduler keeps them.

Three kinds of job (docs/design.md §6), each an APScheduler 3 job with
``max_instances=1`` (a pass still going when its next turn comes is not
started twice) and ``coalesce=True`` (turns missed while the service was
down or busy run once, not once per missed turn):

- ``sync:<site>``: an incremental pass of one site, on the configured
  interval or crontab line;
- ``sweep:<site>``: the nightly full pass (``sync_site(full=True)``) that
  re-maps everything and finds resources deleted at the site;
- ``deliver``: drains the outbox into the trial repository (also woken
  right after a sync that enqueued something).

Misfire grace: a sync or delivery turn that comes late (queued behind
another site's long pass, or due while the service was down) still runs,
once; skipping it would leave a site unsynced for a whole interval because
a neighbour was slow.  Only the sweep has a grace (``SWEEP_GRACE``): one
missed by more waits for the next night rather than run at peak hours.

Jobs live in an ``SQLAlchemyJobStore`` in the adapter's own database, so
``trial-adapter status`` can show the next run from another process and a
restart keeps each job's place in its schedule.  Stored jobs refer to the
module-level entry points below by name; those hand the work to the running
service (``bind``), which owns the database, the locks and the stop flag.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
import tzlocal
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from adapter import config as config_mod

log = logging.getLogger(__name__)

JOBS_TABLE = "apscheduler_jobs"
DELIVERY_JOB = "deliver"
SWEEP_GRACE = dt.timedelta(hours=6)  # a sweep missed by more waits for the next night, off peak hours


def sync_job_id(site_id: str) -> str:
    return f"sync:{site_id}"


def sweep_job_id(site_id: str) -> str:
    return f"sweep:{site_id}"


# ----------------------------------------------------------------- triggers


def timezone(schedule: config_mod.ScheduleConfig) -> dt.tzinfo:
    """The zone crontab lines are read in: the configured one, else the server's."""
    return zoneinfo.ZoneInfo(schedule.timezone) if schedule.timezone else tzlocal.get_localzone()


def sync_trigger(schedule: config_mod.ScheduleConfig) -> BaseTrigger:
    if schedule.sync_cron:
        return CronTrigger.from_crontab(schedule.sync_cron, timezone=timezone(schedule))
    return IntervalTrigger(seconds=round(schedule.sync_interval_minutes * 60, 3), timezone=dt.UTC)


def sweep_trigger(schedule: config_mod.ScheduleConfig) -> BaseTrigger:
    return CronTrigger.from_crontab(schedule.sweep_cron, timezone=timezone(schedule))


def delivery_trigger(schedule: config_mod.ScheduleConfig) -> BaseTrigger:
    return IntervalTrigger(seconds=round(schedule.delivery_interval_minutes * 60, 3), timezone=dt.UTC)


def sync_interval(schedule: config_mod.ScheduleConfig, now: dt.datetime) -> dt.timedelta:
    """The time between two syncs of a site; for a crontab line, the longest gap in the next day.

    Readiness allows a few of these before it calls a site stale, so a
    schedule that pauses overnight ("*/30 6-22 * * *") must count the night.
    """
    if not schedule.sync_cron:
        return dt.timedelta(minutes=schedule.sync_interval_minutes)
    trigger = sync_trigger(schedule)
    longest = dt.timedelta(0)
    previous = trigger.get_next_fire_time(None, now)
    while previous is not None and previous - now < dt.timedelta(days=1):
        following = trigger.get_next_fire_time(previous, previous + dt.timedelta(microseconds=1))
        if following is None:
            break
        longest = max(longest, following - previous)
        previous = following
    return longest or dt.timedelta(days=1)


# ----------------------------------------------------------------- jobs


@dataclass(frozen=True)
class PlannedJob:
    """One job as the config wants it."""

    id: str
    func: Any
    trigger: BaseTrigger
    grace: dt.timedelta | None  # how late a turn may still run; None: always, once (coalesced)
    kwargs: dict[str, Any] = field(default_factory=dict)
    start_now: bool = False  # when new (or its trigger changed): run at once instead of waiting a turn


def plan(config: config_mod.Config) -> list[PlannedJob]:
    """Every job the config asks for."""
    schedule = config.schedule
    jobs: list[PlannedJob] = []
    for site in config.sites:
        jobs.append(
            PlannedJob(
                sync_job_id(site.id), run_sync, sync_trigger(schedule), None, {"site_id": site.id}, True
            )
        )
        jobs.append(
            PlannedJob(
                sweep_job_id(site.id),
                run_sync,
                sweep_trigger(schedule),
                SWEEP_GRACE,
                {"site_id": site.id, "full": True},
            )
        )
    jobs.append(PlannedJob(DELIVERY_JOB, run_delivery, delivery_trigger(schedule), None, {}, True))
    return jobs


def build(engine: Engine, *, workers: int, tz: dt.tzinfo) -> BackgroundScheduler:
    """A scheduler whose jobs live in the adapter's database.

    ``engine`` should be the job store's own (``shutdown`` disposes it).
    SQLite allows one writer at a time, so there ``workers`` should be 1:
    jobs then queue instead of contending for the write lock.
    """
    return BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE)},
        executors={"default": ThreadPoolExecutor(max_workers=workers)},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone=tz,
    )


def apply(
    scheduler: BackgroundScheduler,
    jobs: Iterable[PlannedJob],
    *,
    run_now: Iterable[str] = (),
    now: dt.datetime | None = None,
) -> None:
    """Make the scheduler's stored jobs match ``jobs``.

    A stored job whose trigger is unchanged keeps its next run time (so a
    restart does not reset the schedule; a time already past runs once, at
    once); a changed or new one is scheduled afresh; a job the config no
    longer has (a removed site) is removed.  Ids in ``run_now`` run at once,
    e.g. a site whose last pass was interrupted.
    """
    now = now or dt.datetime.now(dt.UTC)
    run_now = set(run_now)
    wanted = {job.id: job for job in jobs}
    for stored in scheduler.get_jobs():
        if stored.id not in wanted:
            stored.remove()
            log.info("job removed: no longer in the config", extra={"job": stored.id})
    for job in wanted.values():
        stored = scheduler.get_job(job.id)
        options: dict[str, Any] = {}
        if job.id in run_now:
            options["next_run_time"] = now
        elif stored is not None and _same(stored.trigger, job.trigger) and stored.next_run_time:
            options["next_run_time"] = max(stored.next_run_time, now)
        elif job.start_now:
            options["next_run_time"] = now
        scheduler.add_job(
            job.func,
            job.trigger,
            id=job.id,
            name=job.id,
            kwargs=job.kwargs,
            replace_existing=True,
            misfire_grace_time=None if job.grace is None else max(int(job.grace.total_seconds()), 1),
            coalesce=True,
            max_instances=1,
            **options,
        )


def _same(stored: BaseTrigger, planned: BaseTrigger) -> bool:
    """Same schedule: same kind and fields (``str``) and the same timezone."""
    return (str(stored), str(getattr(stored, "timezone", ""))) == (
        str(planned),
        str(getattr(planned, "timezone", "")),
    )


def next_runs(engine: Engine) -> dict[str, dt.datetime]:
    """Job id -> next run time, read from the job store table (no scheduler needed).

    ``status`` calls this from a separate process; the table exists once
    ``trial-adapter run`` has started at least once.
    """
    if not sa.inspect(engine).has_table(JOBS_TABLE):
        return {}
    table = sa.table(JOBS_TABLE, sa.column("id"), sa.column("next_run_time"))
    with engine.connect() as connection:
        rows = connection.execute(sa.select(table.c.id, table.c.next_run_time)).all()
    return {
        job_id: dt.datetime.fromtimestamp(float(epoch), dt.UTC) for job_id, epoch in rows if epoch is not None
    }


# ----------------------------------------------------------------- entry points


class JobRunner(Protocol):
    """What the running service does when a job fires."""

    def sync(self, site_id: str, *, full: bool) -> None: ...

    def deliver(self) -> None: ...


_runner: JobRunner | None = None


def bind(runner: JobRunner | None) -> None:
    """Route fired jobs to ``runner`` (the service), or nowhere (None)."""
    global _runner
    _runner = runner


def run_sync(site_id: str, full: bool = False) -> None:
    """Entry point of ``sync:<site>`` and ``sweep:<site>`` (stored by name)."""
    if _runner is None:
        log.error("a job fired with no service bound; ignored", extra={"job": sync_job_id(site_id)})
        return
    _runner.sync(site_id, full=full)


def run_delivery() -> None:
    """Entry point of ``deliver`` (stored by name)."""
    if _runner is None:
        log.error("a job fired with no service bound; ignored", extra={"job": DELIVERY_JOB})
        return
    _runner.deliver()
