"""Console fixes as background jobs: a fix answers at once and re-maps behind the page.

A mapping fix re-maps the whole site (``reconciliation.override_fix``):
seconds on the demo, minutes on a large site, far too long to hold a web
request open.  The console checks the fix in the request, hands it to the
``JobRunner`` and sends the browser to the job's page, which refreshes
itself until the fix is done.

Fixes of one site run one at a time, in the order they were made.  A second
fix while one runs waits behind it rather than being refused: a data manager
clearing a worklist goes on to the next issue instead of waiting minutes per
fix.  A waiting fix is checked again when its turn comes, because the fix
before it may have changed the same entry.  A site has at most
``max_waiting`` fixes waiting, and the same fix sent twice by the same user
(a double click) is one job.  Fixes of different sites run side by side; the
site's sync lock, which the fix takes itself, keeps a fix and a sync pass of
one site apart across processes.

Jobs live in this process's memory only: what lasts is what a fix leaves
behind, the site's fix file, the re-mapped state and the audit entry.  A
console that stops while a fix runs finishes that fix first (the worker is
not a daemon thread); fixes still waiting are dropped, having changed nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from adapter import errors
from adapter.reconciliation.actions import FixResult, SiteBusy
from adapter.reconciliation.override_fix import RECORDING, REMAPPING, WRITING, FixProgress
from adapter.store.models import utcnow

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed"]
Work = Callable[[FixProgress], FixResult]  # the fix itself, told how to report its progress

# Stages before the fix reports its own (``override_fix``: WRITING, REMAPPING, RECORDING).
WAITING = "waiting for the fixes before it at this site"
CHECKING = "checking the fix against the site's mappings"
SYNCING = "waiting for the site's sync pass to finish"

# What a failure at each stage left behind, for the job's page.
AFTERMATH = {
    WAITING: "Nothing was changed.",
    CHECKING: "Nothing was changed.",
    SYNCING: "Nothing was changed.",
    WRITING: "The site's fix file was left as it was before the fix.",
    REMAPPING: "The site's fix file was put back as it was; the next sync maps back whatever "
    "this fix had already re-mapped.",
    RECORDING: "The site's fix file was changed and the site re-mapped, but the audit entry may "
    "be missing: check the audit log and tell the adapter's administrator.",
}


class JobRefused(Exception):
    """The console takes no such fix now; the message says why and what to do."""


@dataclass(frozen=True)
class JobOrder:
    """What a fix job is about and who asked; two equal orders make the same change."""

    site: str
    action: str  # the audit action the fix writes (``reconciliation.actions``)
    what: str  # for people: "Map …|0045 to creatinine"
    started_by: str
    issue_key: str | None = None
    undoes: int | None = None  # an undo: the audit entry it reverses


@dataclass
class Job:
    """One fix job and how far it got.  The runner hands out copies, never the live record."""

    id: str
    order: JobOrder
    state: JobState = "queued"
    stage: str = WAITING
    done: int = 0  # during REMAPPING: stored resources re-mapped so far, of ``total``
    total: int = 0
    ahead: int = 0  # while queued: fixes of the same site that run before it
    submitted_at: dt.datetime = field(default_factory=utcnow)
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    result: FixResult | None = None
    error: str | None = None  # why it failed, safe to show: no site data, no stack trace
    aftermath: str | None = None  # what the failure left behind

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


class JobRunner:
    """Runs fix jobs, one site's at a time in order, each site's on its own worker thread."""

    def __init__(
        self,
        *,
        max_waiting: int = 20,
        keep: int = 200,
        sync_wait_seconds: float = 30 * 60,
        sync_poll_seconds: float = 2.0,
    ) -> None:
        self.max_waiting = max_waiting
        self.keep = keep  # finished jobs remembered for their pages; older ones are forgotten
        # A fix that finds its site being synced waits for the pass (polling its lock) this long at most.
        self.sync_wait_seconds = sync_wait_seconds
        self.sync_poll_seconds = sync_poll_seconds
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}  # in the order they were made
        self._waiting: dict[str, deque[tuple[Job, Work]]] = {}
        self._working: set[str] = set()  # sites whose worker thread is alive
        self._closed = False

    def submit(self, order: JobOrder, work: Work, *, check: Callable[[], object] = lambda: None) -> Job:
        """Queue a fix for its site once ``check`` passes; the same order waiting or running is that job.

        ``check`` runs in the caller's thread, so its refusal (``FixRefused``)
        reaches the page that asked; it is not run for an order already taken:
        the fix it repeats may already have changed what it checks.
        """
        with self._lock:
            for job in self._jobs.values():
                if job.active and job.order == order:
                    return self._copy(job)
        check()
        with self._lock:
            if self._closed:
                raise JobRefused("The console is stopping; nothing was changed. Make the fix again later.")
            waiting = self._waiting.setdefault(order.site, deque())
            if len(waiting) >= self.max_waiting:
                raise JobRefused(
                    f"{len(waiting)} fixes already wait their turn at {order.site}; nothing was changed. "
                    "Make this one again when they have run (the audit log shows them)."
                )
            job = Job(id=secrets.token_hex(8), order=order)
            self._jobs[job.id] = job
            waiting.append((job, work))
            self._forget_old()
            if order.site not in self._working:
                self._working.add(order.site)
                worker = threading.Thread(target=self._drain, args=(order.site,), name=f"fix-{order.site}")
                worker.start()
            return self._copy(job)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return self._copy(job) if job is not None else None

    def recent(self, limit: int = 10, *, site: str | None = None, active: bool = False) -> list[Job]:
        """The newest jobs first; only one site's, or only those queued or running, if asked."""
        with self._lock:
            found = [
                self._copy(job)
                for job in reversed(self._jobs.values())
                if (site is None or job.order.site == site) and (job.active or not active)
            ]
        return found[:limit]

    def close(self) -> None:
        """Take no more fixes and drop those still waiting (nothing of them was done).

        A fix already running finishes: its worker is not a daemon thread, so
        the process waits for it before it exits.
        """
        with self._lock:
            self._closed = True
            for waiting in self._waiting.values():
                for job, _work in waiting:
                    job.state, job.finished_at = "failed", utcnow()
                    job.error = "The console stopped before this fix started."
                    job.aftermath = AFTERMATH[WAITING]
                waiting.clear()

    def _drain(self, site: str) -> None:
        """A site's worker: run its waiting fixes one by one, then end."""
        while True:
            with self._lock:
                waiting = self._waiting[site]
                if not waiting:
                    self._working.discard(site)
                    return
                job, work = waiting.popleft()
                job.state, job.stage, job.started_at = "running", CHECKING, utcnow()
            self._run(job, work)

    def _run(self, job: Job, work: Work) -> None:
        started = time.monotonic()
        log.info("console fix started", extra=_fields(job))

        def progress(stage: str, done: int = 0, total: int = 0) -> None:
            with self._lock:
                job.stage, job.done, job.total = stage, done, total

        try:
            result = self._after_the_sync(job, work, progress)
        except BaseException as exc:  # whatever it was, the job must end and the site's next fix run
            self._failed(job, exc, started)
            return
        with self._lock:
            job.state, job.result, job.finished_at = "done", result, utcnow()
        log.info(
            "console fix finished",
            extra={
                **_fields(job),
                "audit_id": result.audit_id,
                "records_changed": result.records_changed,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    def _after_the_sync(self, job: Job, work: Work, progress: FixProgress) -> FixResult:
        """Run the fix; while its site is being synced, wait for the pass and run it again.

        A fix that meets a sync pass changed nothing (``SiteBusy`` comes before
        any write), so trying it again is safe, and the fix checks itself anew
        each time.  A pass normally ends within minutes; after
        ``sync_wait_seconds`` the job fails with the busy message, as does a
        fix still waiting when the console stops.
        """
        deadline = time.monotonic() + self.sync_wait_seconds
        while True:
            try:
                return work(progress)
            except SiteBusy:
                with self._lock:
                    stopping = self._closed
                if stopping or time.monotonic() + self.sync_poll_seconds > deadline:
                    raise
                progress(SYNCING)
                time.sleep(self.sync_poll_seconds)

    def _failed(self, job: Job, exc: BaseException, started: float) -> None:
        with self._lock:
            job.state, job.finished_at = "failed", utcnow()
            job.error = _failure_text(exc)
            job.aftermath = AFTERMATH.get(job.stage, AFTERMATH[RECORDING])
            fields = {**_fields(job), "stage": job.stage, "seconds": round(time.monotonic() - started, 3)}
        if isinstance(exc, errors.AdapterError):
            log.warning("console fix not made", extra={**fields, "error": str(exc)})
            return
        # Anything else is a bug whose message could quote site data: its type and where only.
        frames = traceback.extract_tb(exc.__traceback__)
        where = [f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}" for frame in frames[-6:]]
        error_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
        log.error("console fix crashed", extra={**fields, "error_type": error_type, "where": where})

    def _copy(self, job: Job) -> Job:
        """A snapshot of ``job`` (under the lock), with how many fixes of its site run before it."""
        ahead = 0
        if job.state == "queued":
            waiting = [queued.id for queued, _work in self._waiting.get(job.order.site, ())]
            running = any(
                other.state == "running" and other.order.site == job.order.site
                for other in self._jobs.values()
            )
            ahead = waiting.index(job.id) + int(running) if job.id in waiting else 0
        return dataclasses.replace(job, ahead=ahead)

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if not job.active]
        for job_id in finished[: max(0, len(finished) - self.keep)]:
            del self._jobs[job_id]


def _failure_text(exc: BaseException) -> str:
    """Why a fix failed, for its page: the adapter's own words, or only the kind of an unexpected error."""
    if isinstance(exc, errors.AdapterError):
        return str(exc)  # written for people, naming no patient data (adapter.errors)
    return (
        f"The fix stopped on an unexpected error ({type(exc).__name__}). "
        "The console's log says where; the error's text is not shown, as it could quote site data."
    )


def _fields(job: Job) -> dict[str, Any]:
    order = job.order
    return {"job": job.id, "site": order.site, "action": order.action, "actor": order.started_by}
