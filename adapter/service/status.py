"""What state each site is in, read from the state database.

One read-only snapshot serves three readers: ``trial-adapter status`` (a
person or a script), ``/readyz`` (a load balancer or monitoring) and the
scheduler's restart logic.  Everything comes from the database, never from
the running process, so ``status`` tells the truth from any shell even while
the service runs, or after it died.

Two things the rows alone cannot say are read from the locks
(``adapter.store.locks``): whether a pass still marked ``running`` has a live
process (its site lock), and whether the service is up (the ``SERVICE``
lock).  A pass whose process is gone shows as ``interrupted`` (the row
itself is closed by the next pass of that site), and the next runs from the
job store are shown only while a service is there to run them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter.service import scheduler
from adapter.store import counts, locks, models, runs
from adapter.store.models import utcnow


@dataclass
class RunInfo:
    run_id: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    outcome: str  # running | ok | stopped | failed | interrupted
    seconds: float | None


@dataclass
class SiteStatus:
    site: str
    last_run: RunInfo | None
    last_success_at: dt.datetime | None
    watermarks: dict[str, dt.datetime | None] = field(default_factory=dict)
    resume_pending: list[str] = field(default_factory=list)  # resource types a pass stopped inside
    outbox_pending: int = 0
    outbox_oldest: dt.datetime | None = None
    open_issues: dict[str, int] = field(default_factory=dict)
    next_sync: dt.datetime | None = None
    next_sweep: dt.datetime | None = None


@dataclass
class Snapshot:
    generated_at: dt.datetime
    sites: list[SiteStatus]
    outbox_pending: int
    outbox_oldest: dt.datetime | None
    next_delivery: dt.datetime | None
    # False when no live `trial-adapter run` holds the service lock: then no next runs are shown
    service_running: bool = False
    schedule_known: bool = False  # a service has planned jobs in this database at some time

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types; times as ISO 8601 in UTC."""
        return _jsonable(asdict(self))


@dataclass
class Readiness:
    ready: bool
    problems: list[str]


def snapshot(sessions: sessionmaker[Session], config: config_mod.Config) -> Snapshot:
    """Per configured site: last run, watermarks, backlog, open issues, next runs."""
    engine = sessions.kw["bind"]
    planned = scheduler.next_runs(engine)
    service_running = locks.held_by_live_holder(engine, locks.SERVICE)
    # After a kill -9 the job store still holds the next run times: no countdown for a dead service.
    upcoming = planned if service_running else {}
    with sessions() as session:
        successes = last_successes(session)
        sites = [_site_status(session, site.id, upcoming, successes) for site in config.sites]
        backlog = counts.outbox_backlog(session)
    return Snapshot(
        generated_at=utcnow(),
        sites=sites,
        outbox_pending=backlog.pending,
        outbox_oldest=backlog.oldest,
        next_delivery=upcoming.get(scheduler.DELIVERY_JOB),
        service_running=service_running,
        schedule_known=bool(planned),
    )


def _site_status(
    session: Session,
    site: str,
    upcoming: dict[str, dt.datetime],
    successes: dict[str, dt.datetime],
) -> SiteStatus:
    last = session.scalars(
        sa.select(models.SyncRun)
        .where(models.SyncRun.site == site)
        .order_by(models.SyncRun.id.desc())
        .limit(1)
    ).first()
    cursors = session.scalars(
        sa.select(models.SyncCursor)
        .where(models.SyncCursor.site == site)
        .order_by(models.SyncCursor.resource_type)
    )
    backlog = counts.outbox_backlog(session, site)
    status = SiteStatus(
        site=site,
        last_run=_run_info(last, runs.shown_outcome(session, last)) if last is not None else None,
        last_success_at=successes.get(site),
        outbox_pending=backlog.pending,
        outbox_oldest=backlog.oldest,
        open_issues=dict(sorted(counts.open_issue_counts(session, site).items())),
        next_sync=upcoming.get(scheduler.sync_job_id(site)),
        next_sweep=upcoming.get(scheduler.sweep_job_id(site)),
    )
    for cursor in cursors:
        status.watermarks[cursor.resource_type] = cursor.watermark
        if cursor.resume is not None:
            status.resume_pending.append(cursor.resource_type)
    return status


def _run_info(run: models.SyncRun, outcome: str) -> RunInfo:
    seconds = run.counts.get("seconds") if isinstance(run.counts, dict) else None
    return RunInfo(
        run_id=run.id,
        started_at=run.started_at,
        finished_at=run.finished_at,
        outcome=outcome,
        seconds=float(seconds) if isinstance(seconds, int | float) else None,
    )


def last_successes(session: Session) -> dict[str, dt.datetime]:
    """Site -> when its latest successful pass finished."""
    rows = session.execute(
        sa.select(models.SyncRun.site, sa.func.max(models.SyncRun.finished_at))
        .where(models.SyncRun.outcome == "ok")
        .group_by(models.SyncRun.site)
    ).all()
    return {site: finished for site, finished in rows if finished is not None}


def last_outcomes(session: Session) -> dict[str, str]:
    """Site -> outcome of its latest pass (``running`` if it never finished)."""
    latest = (
        sa.select(models.SyncRun.site, sa.func.max(models.SyncRun.id).label("id"))
        .group_by(models.SyncRun.site)
        .subquery()
    )
    rows = session.execute(
        sa.select(models.SyncRun.site, models.SyncRun.outcome).join(latest, latest.c.id == models.SyncRun.id)
    ).all()
    return dict(rows)


def readiness(
    sessions: sessionmaker[Session], config: config_mod.Config, now: dt.datetime | None = None
) -> Readiness:
    """Ready when the database answers and every site synced successfully recently enough.

    "Recently enough" is ``service.stale_after_intervals`` sync intervals, so
    one failed or slow pass does not page anyone, but a site that has not
    delivered for hours does.  A site that never synced is not ready.
    """
    now = now or utcnow()
    try:
        with sessions() as session:
            session.execute(sa.select(1))
            successes = last_successes(session)
    except sa.exc.SQLAlchemyError as exc:
        return Readiness(False, [f"state database unreachable ({type(exc).__name__})"])
    allowed = scheduler.sync_interval(config.schedule, now) * config.service.stale_after_intervals
    problems = []
    for site in config.sites:
        last = successes.get(site.id)
        if last is None:
            problems.append(f"{site.id}: no successful sync yet")
        elif now - last > allowed:
            problems.append(
                f"{site.id}: last successful sync {_age(now - last)} ago, more than {_age(allowed)} allowed"
            )
    return Readiness(not problems, problems)


def _age(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 2 * 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value
