"""``trial-adapter run``: the unattended service and its life cycle.

Start: check every site's files (fail fast, like ``sync``), open and migrate
the database, bind the health endpoint, put the planned jobs into the job
store and start the scheduler.  A site whose last pass did not finish (a
stop, a crash, ``kill -9``) syncs at once, resuming from its last committed
page.

Stop (SIGTERM, SIGINT): a flag that every running pass polls between pages
(``sync_site(should_stop=...)``); the pass commits the page it is on and
ends with outcome ``stopped``.  A delivery polls it between records
(``outbox.drain(should_stop=...)``) and leaves the rest queued.  The
service waits at most ``service.stop_timeout_seconds`` for that, then exits
0, or, if a pass is stuck (a hung network read), reports it and exits
non-zero: what was committed is safe either way.

Reload (SIGHUP): the config file is read and checked again; if it is valid
the jobs are re-planned (sites added or removed, schedules changed), else
the running config stays and the error is logged.  Mapping files need no
reload: every pass reads them afresh.  ``store.url`` and ``service.listen``
take effect only after a restart.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import prometheus_client
import sqlalchemy as sa
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter import errors
from adapter.delivery import redelivery
from adapter.service import health, job, metrics, process, scheduler, status
from adapter.store import db, locks, models
from adapter.sync import SiteSetup

log = logging.getLogger(__name__)

RETRY_BUSY = dt.timedelta(minutes=1)  # a sweep that found its site locked tries again this much later
PRESENCE_RETRY = 30.0  # seconds between tries for the service lock another service holds


@dataclass(frozen=True)
class Stopped:
    """How the service ended."""

    exit_code: int
    clean: bool  # False: a pass was still running at the deadline; the process must exit hard
    seconds: float


class Service:
    """The scheduler, its jobs, the health endpoint, and stopping and reloading them."""

    def __init__(self, load_config: Callable[[], config_mod.Config], *, listen: str | None = None) -> None:
        self._load_config = load_config
        self.config = load_config()
        self.listen = listen or self.config.service.listen
        self.stopping = threading.Event()
        self._reload = threading.Event()
        self._active: dict[str, float] = {}
        self._idle = threading.Condition()
        self._sessions: sessionmaker[Session] | None = None
        self._scheduler: BackgroundScheduler | None = None
        self._health: health.HealthServer | None = None
        self._collector: metrics.StoreCollector | None = None
        self._presence: locks.Lock | None = None  # the SERVICE lock: tells `status` we are up
        self._presence_tried = 0.0
        self._presence_warned = False

    # ------------------------------------------------------------ life cycle

    def start(self) -> None:
        config = self.config
        for site in config.sites:
            SiteSetup.load(config, site)  # a broken mapping or roster stops the start, not a 3 a.m. job
        self._sessions = db.open_store(config.store.url)
        self._check_repository(config)
        self._hold_presence()
        sqlite = self._sessions.kw["bind"].dialect.name == "sqlite"
        self._scheduler = scheduler.build(
            db.create_engine(config.store.url),
            workers=1 if sqlite else len(config.sites) + 1,
            tz=scheduler.timezone(config.schedule),
        )
        self._health = health.HealthServer(self.listen, health.Probes(alive=self.alive, ready=self.ready))
        self._collector = metrics.StoreCollector(self._sessions, [site.id for site in config.sites])
        prometheus_client.REGISTRY.register(self._collector)
        scheduler.bind(self)
        self._scheduler.start(paused=True)
        scheduler.apply(self._scheduler, scheduler.plan(config), run_now=self._unfinished_sites())
        self._scheduler.resume()
        self._health.start()
        log.info(
            "service started",
            extra={
                "sites": [site.id for site in config.sites],
                "health": self._health.address,
                "store": self._sessions.kw["bind"].dialect.name,
            },
        )

    @property
    def health_address(self) -> str | None:
        return self._health.address if self._health else None

    def serve(self) -> Stopped:
        """Run until ``request_stop``; handle reloads meanwhile."""
        while not self.stopping.wait(0.5):
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            if self._presence is not None and self._presence.lost:
                self._drop_presence()  # taken over after a long stall: take it back when free
            if self._presence is None and time.monotonic() - self._presence_tried > PRESENCE_RETRY:
                self._hold_presence()
        return self._shut_down()

    def _hold_presence(self) -> None:
        """Take the SERVICE lock, which ``status`` reads to tell whether a service runs.

        Only one service per database is supported; a second one still runs,
        and takes the lock over once the first is gone.
        """
        self._presence_tried = time.monotonic()
        try:
            self._presence = locks.try_acquire(self._require_sessions(), locks.SERVICE)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("could not record the service as running", extra={"error": type(exc).__name__})
            return
        if self._presence is None and not self._presence_warned:
            self._presence_warned = True
            log.warning("another service is running on this state database; run only one per database")

    def _drop_presence(self) -> None:
        if self._presence is None:
            return
        try:
            self._presence.release()
        except sa.exc.SQLAlchemyError as exc:  # a dead holder's lock is seen as free anyway
            log.warning("could not record the service as stopped", extra={"error": type(exc).__name__})
        self._presence = None

    def request_stop(self) -> None:
        """Ask running passes to stop after their page, and the service to exit (signal-safe)."""
        self.stopping.set()

    def request_reload(self) -> None:
        """Re-read the config at the next turn of the main loop (signal-safe)."""
        self._reload.set()

    def _shut_down(self) -> Stopped:
        started = time.monotonic()
        log.info("stopping", extra={"running_jobs": sorted(self._active)})
        if self._scheduler is not None:
            with contextlib.suppress(SchedulerNotRunningError):
                self._scheduler.shutdown(wait=False)
        with self._idle:
            clean = self._idle.wait_for(
                lambda: not self._active, timeout=self.config.service.stop_timeout_seconds
            )
        scheduler.bind(None)
        self._drop_presence()
        if self._collector is not None:
            prometheus_client.REGISTRY.unregister(self._collector)
        if self._health is not None:
            self._health.stop()
        seconds = round(time.monotonic() - started, 3)
        if not clean:
            log.error(
                "stop timeout: passes still running; exiting without them (committed pages are kept)",
                extra={"running_jobs": sorted(self._active), "seconds": seconds},
            )
            return Stopped(errors.EXIT_UNEXPECTED, clean=False, seconds=seconds)
        log.info("service stopped", extra={"seconds": seconds})
        return Stopped(errors.EXIT_OK, clean=True, seconds=seconds)

    def reload(self) -> None:
        """Take a changed config file into use, or keep the running one if it is broken."""
        try:
            new = self._load_config()
            for site in new.sites:
                SiteSetup.load(new, site)
        except errors.AdapterError as exc:
            log.error("reload failed; the previous config stays in use", extra={"error": str(exc)})
            return
        for key, old_value, new_value in (
            ("store.url", self.config.store.url, new.store.url),
            ("service.listen", self.config.service.listen, new.service.listen),
        ):
            if old_value != new_value:
                log.warning("changed setting takes effect only after a restart", extra={"setting": key})
        repository_changed = new.repository != self.config.repository
        self.config = new.model_copy(update={"store": self.config.store})
        if repository_changed and self._sessions is not None:
            self._check_repository(self.config)
        if self._collector is not None:
            self._collector.sites = [site.id for site in new.sites]
        if self._scheduler is not None:
            scheduler.apply(self._scheduler, scheduler.plan(self.config))
        log.info("config reloaded", extra={"sites": [site.id for site in new.sites]})

    def _check_repository(self, config: config_mod.Config) -> None:
        """A changed [repository] gets only new changes by itself: log what it lacks, and the fix.

        Pending items go to the repository configured now (``adapter.delivery.redelivery``).
        """
        try:
            change = job.repository_change(config, self._require_sessions())
        except sa.exc.SQLAlchemyError as exc:
            log.warning(
                "could not compare the trial repository with the state", extra={"error": type(exc).__name__}
            )
            return
        if change is not None:
            log.warning(
                "the trial repository changed; current records are missing from it",
                extra={
                    "repository": str(change.current),
                    "missing": change.owed,
                    "previous": change.previous[0] if change.previous else None,
                    "fix": redelivery.RESEND,
                },
            )

    # ------------------------------------------------------------ probes

    def alive(self) -> bool:
        return self._scheduler is not None and self._scheduler.running

    def ready(self) -> status.Readiness:
        if self._sessions is None:
            return status.Readiness(False, ["starting"])
        return status.readiness(self._sessions, self.config)

    # ------------------------------------------------------------ jobs

    def sync(self, site_id: str, *, full: bool) -> None:
        """A ``sync:<site>`` or ``sweep:<site>`` turn."""
        name = scheduler.sweep_job_id(site_id) if full else scheduler.sync_job_id(site_id)
        kind = "sweep" if full else "sync"
        with self._running(name) as go:
            if not go:
                return
            config, sessions = self.config, self._require_sessions()
            started = time.monotonic()
            try:
                job.carry_over_fixes(config, sessions, site_id)
                setup = SiteSetup.load(config, config.site(site_id))
                summary = job.sync_locked(setup, sessions, full=full, should_stop=self.stopping.is_set)
            except Exception as exc:
                metrics.record_unfinished(site_id, kind=kind, outcome="error")
                process.log_failure(name, exc, started, site=site_id)
                return
            if summary is None:
                metrics.record_unfinished(site_id, kind=kind, outcome="busy")
                if full:
                    self._move(name, RETRY_BUSY)
                return
            with sessions() as session:
                run = session.get(models.SyncRun, summary.run_id)
                outcome = run.outcome if run is not None else "unknown"
            metrics.record_sync(summary, kind=kind, outcome=outcome)
            log.info(
                "job finished",
                extra={
                    "job": name,
                    "site": site_id,
                    "run_id": summary.run_id,
                    "outcome": outcome,
                    "resources_read": summary.resources_read,
                    "upserts": summary.upserts,
                    "retractions": summary.retractions,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
            if summary.upserts or summary.retractions:
                self._move(scheduler.DELIVERY_JOB, dt.timedelta(0))

    def deliver(self) -> None:
        """A ``deliver`` turn."""
        with self._running(scheduler.DELIVERY_JOB) as go:
            if not go:
                return
            started = time.monotonic()
            try:
                drained = job.deliver_outbox(
                    self.config, self._require_sessions(), should_stop=self.stopping.is_set
                )
            except Exception as exc:
                process.log_failure(scheduler.DELIVERY_JOB, exc, started)
                return
            if drained is None:
                return
            metrics.record_delivery(drained)
            if drained.stopped is not None:
                log.warning(
                    "delivery paused: the trial repository is unavailable; retried at the next turn",
                    extra={"job": scheduler.DELIVERY_JOB, "error": drained.stopped},
                )
            level = logging.INFO if drained.delivered or drained.failed else logging.DEBUG
            log.log(
                level,
                "job finished",
                extra={
                    "job": scheduler.DELIVERY_JOB,
                    "delivered": drained.delivered,
                    "failed": drained.failed,
                    "waiting": drained.waiting,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )

    @contextlib.contextmanager
    def _running(self, name: str) -> Iterator[bool]:
        """Track a running job for the stop deadline; yields False once stopping (skip the turn)."""
        with self._idle:
            self._active[name] = time.monotonic()
        try:
            yield not self.stopping.is_set()
        finally:
            with self._idle:
                self._active.pop(name, None)
                self._idle.notify_all()

    def _move(self, job_id: str, delay: dt.timedelta) -> None:
        """Run a job ``delay`` from now instead of at its next turn."""
        if self._scheduler is None or self.stopping.is_set():
            return
        with contextlib.suppress(JobLookupError, SchedulerNotRunningError):
            self._scheduler.modify_job(job_id, next_run_time=dt.datetime.now(dt.UTC) + delay)

    def _unfinished_sites(self) -> set[str]:
        """Sync jobs to run at once: sites whose last pass did not end ``ok``, or never ran."""
        with self._require_sessions()() as session:
            outcomes = status.last_outcomes(session)
        return {scheduler.sync_job_id(site.id) for site in self.config.sites if outcomes.get(site.id) != "ok"}

    def _require_sessions(self) -> sessionmaker[Session]:
        if self._sessions is None:
            raise errors.StoreError("the service has not opened its state database yet")
        return self._sessions
