"""The main job: sync every configured site, then drain the outbox.

The CLI's ``sync --once`` and ``demo`` call ``run_once`` (``load_setups`` +
``run_setups``); the scheduler calls its two halves, ``sync_locked`` per site
and ``deliver_outbox``, as separate jobs.  One code path, so what a site IT team tests by hand is what runs
unattended.  Both halves run under a lock (``adapter.store.locks``): a second
adapter process on the same database skips a site that is being synced
instead of racing it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter import errors
from adapter.delivery import outbox, redelivery
from adapter.fhir.validation import Mode
from adapter.reconciliation import legacy
from adapter.sinks import factory, identity
from adapter.store import db, locks, models
from adapter.store.models import utcnow
from adapter.sync import Progress, SiteSetup, StopCheck, SyncSummary, sync_site

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    syncs: list[SyncSummary]
    delivery: outbox.DrainSummary | None
    busy: list[str] = field(default_factory=list)  # sites (or the outbox) another process held


def load_setups(config: config_mod.Config, sites: Sequence[config_mod.SiteConfig]) -> list[SiteSetup]:
    """Every site's files, loaded and checked: a broken one fails the run before any state changes."""
    return [SiteSetup.load(config, site) for site in sites]


def carry_over_fixes(config: config_mod.Config, sessions: sessionmaker[Session], site_id: str) -> bool:
    """Move a site's fixes from the old place into its own fix file (once); True if any moved.

    Never fails a pass: fixes that cannot be moved (an unwritable folder) are
    logged with the fix, and the old file, where it still exists, keeps
    being read meanwhile.
    """
    try:
        return legacy.migrate_legacy_overrides(config, sessions, site_id) > 0
    except (errors.AdapterError, OSError) as exc:
        log.warning("site mapping fixes could not be moved", extra={"site": site_id, "error": str(exc)})
        return False


def expected_lines(setups: Sequence[SiteSetup]) -> int:
    """Source lines to read, for a progress bar."""
    total = 0
    for setup in setups:
        source = setup.make_source()
        total += source.expected_total() or 0
    return total


def run_once(
    config: config_mod.Config,
    sites: Sequence[config_mod.SiteConfig],
    *,
    full: bool = False,
    deliver: bool = True,
    progress: Progress | None = None,
    should_stop: StopCheck | None = None,
    validation: Mode = "lean",
) -> JobResult:
    """Sync ``sites`` (all files loaded and checked first), then deliver.

    ``validation`` picks the models source resources are validated with
    (``adapter.fhir.validation``; ``r4b`` e.g. for bench/map_bench.py).
    """
    return run_setups(
        config,
        load_setups(config, sites),
        full=full,
        deliver=deliver,
        progress=progress,
        should_stop=should_stop,
        validation=validation,
    )


def run_setups(
    config: config_mod.Config,
    setups: Sequence[SiteSetup],
    *,
    full: bool = False,
    deliver: bool = True,
    progress: Progress | None = None,
    should_stop: StopCheck | None = None,
    validation: Mode = "lean",
) -> JobResult:
    """``run_once`` for sites already loaded (``load_setups``), e.g. to size a progress bar first."""
    sessions = db.open_store(config.store.url)
    result = JobResult(syncs=[], delivery=None)
    for setup in setups:
        if carry_over_fixes(config, sessions, setup.site.id):
            setup = SiteSetup.load(config, setup.site)
        summary = sync_locked(
            setup, sessions, full=full, progress=progress, should_stop=should_stop, validation=validation
        )
        if summary is None:
            result.busy.append(setup.site.id)
        else:
            result.syncs.append(summary)
    if deliver:
        result.delivery = deliver_outbox(config, sessions)
        if result.delivery is None:
            result.busy.append(locks.OUTBOX)
    return result


def sync_locked(
    setup: SiteSetup,
    sessions: sessionmaker[Session],
    *,
    full: bool = False,
    progress: Progress | None = None,
    should_stop: StopCheck | None = None,
    validation: Mode = "lean",
) -> SyncSummary | None:
    """One pass of one site under its lock; None when another process holds the lock.

    The pass also stops (after the current page) when the lock is lost, e.g.
    a lease taken over after a long stall, so two holders never write at once.
    """
    site_id = setup.site.id
    lock = locks.try_acquire(sessions, site_id)
    if lock is None:
        log.warning("site is being synced by another process; skipped", extra={"site": site_id})
        return None
    asked = should_stop or (lambda: False)
    with lock:
        _close_interrupted_runs(sessions, site_id)
        return sync_site(
            setup,
            sessions,
            full=full,
            progress=progress,
            should_stop=lambda: asked() or lock.lost,
            validation=validation,
        )


def deliver_outbox(
    config: config_mod.Config,
    sessions: sessionmaker[Session],
    *,
    should_stop: StopCheck | None = None,
    retry_now: bool = False,
) -> outbox.DrainSummary | None:
    """Drain the outbox into the trial repository; None when another process is draining it.

    ``should_stop`` (SIGTERM in the service) ends the drain between records;
    what was not sent stays queued for the next drain.  Every item delivered
    records the configured repository (``adapter.delivery.redelivery``).
    ``retry_now`` also tries items still in their backoff.
    """
    lock = locks.try_acquire(sessions, locks.OUTBOX)
    if lock is None:
        log.warning("the outbox is being delivered by another process; skipped")
        return None
    with lock:
        redelivery.note(config, sessions)
        sink = factory.make_sink(config.repository, should_stop=should_stop)
        return outbox.drain(
            sessions,
            sink,
            should_stop=should_stop,
            repository=identity.of(config.repository).fingerprint,
            retry_now=retry_now,
        )


def repository_change(config: config_mod.Config, sessions: sessionmaker[Session]) -> redelivery.Change | None:
    """At the start of a run: note the configured repository, and say what it lacks if it changed.

    The CLI prints the change, the service logs it.
    """
    redelivery.note(config, sessions)
    return redelivery.change(config, sessions)


def _close_interrupted_runs(sessions: sessionmaker[Session], site_id: str) -> None:
    """Runs still marked running while we hold the site's lock died mid-pass (kill -9, power cut).

    Marking them ``interrupted`` keeps ``status`` truthful; their committed
    pages stay, and this pass resumes from them.
    """
    with sessions.begin() as session:
        session.execute(
            sa.update(models.SyncRun)
            .where(models.SyncRun.site == site_id, models.SyncRun.outcome == "running")
            .values(outcome="interrupted", finished_at=utcnow())
        )
