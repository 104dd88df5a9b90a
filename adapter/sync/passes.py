"""The two passes over one site: ``sync_site`` reads the source, ``remap_site`` only the state.

A sync links the site's patients to the roster, re-maps what a catalog or
link change affects, ingests each mapped type page by page, retires what a
complete listing no longer holds, and derives the subjects it touched.  A
re-map does the middle and the end without the source.  Both record their
run (``runs``) and keep the garbage collector off the heap that outlives
them (``collector``).
"""

from __future__ import annotations

import logging
import time
import zoneinfo

from sqlalchemy.orm import Session, sessionmaker

from adapter import errors
from adapter.fhir.source import Source
from adapter.fhir.validation import Mode
from adapter.mapping import engine
from adapter.store import planner, state
from adapter.sync import collector, server_faults
from adapter.sync.derive import derive_dirty
from adapter.sync.ingest import ingest_type, retire_vanished
from adapter.sync.patients import link_patients, linked_subjects
from adapter.sync.remap import RemapProgress, remap_stored
from adapter.sync.runs import Progress, StopCheck, SyncStopped, SyncSummary, finish_run, open_run
from adapter.sync.setup import SiteSetup

log = logging.getLogger(__package__)  # "adapter.sync": one logger name for the whole pass

MAPPED_TYPES = ("Observation", "MedicationAdministration", "Procedure")


@collector.sparing
def sync_site(
    setup: SiteSetup,
    sessions: sessionmaker[Session],
    *,
    full: bool = False,
    progress: Progress | None = None,
    source: Source | None = None,
    should_stop: StopCheck | None = None,
    validation: Mode = "lean",
) -> SyncSummary:
    """Run one pass for one site; return its summary.

    ``full`` ignores watermarks and re-maps every resource, even unchanged
    ones; ``source`` defaults to the one the site's config names.
    ``should_stop`` is polled between pages (SIGTERM in the service): the
    pass then ends after the current page with outcome ``stopped``; what was
    committed stays, and the next pass resumes from there.  ``validation``
    picks the models source resources are validated with
    (``adapter.fhir.validation``): ``lean``, or ``r4b`` to audit a site's
    conformance.
    """
    started = time.monotonic()
    site = setup.site
    source = source or setup.make_source()
    stop = should_stop or (lambda: False)
    summary = SyncSummary(site=site.id)
    with sessions.begin() as session:
        summary.run_id = open_run(session, site.id)
    statistics = planner.Statistics(sessions)  # PostgreSQL: ANALYZE as the pass loads rows
    log.info("sync started", extra={"site": site.id, "run_id": summary.run_id})
    outcome = "failed"
    try:
        subjects, relinked = link_patients(setup, source, sessions, summary, progress)
        ctx = engine.SiteContext(
            site=site.id,
            timezone=zoneinfo.ZoneInfo(site.timezone),
            catalog=setup.catalog,
            subjects=subjects,
        )
        _fault_cleared(sessions, site.id, "Patient")
        remap_stored(
            sessions, ctx, summary, relinked, everything=False, validation=validation, should_stop=stop
        )
        for resource_type in MAPPED_TYPES:
            ingest_type(
                source,
                sessions,
                ctx,
                resource_type,
                sorted(subjects),
                summary,
                validation=validation,
                full=full,
                progress=progress,
                should_stop=stop,
                max_retraction_share=setup.max_retraction_share,
                statistics=statistics,
                resources_per_commit=setup.resources_per_commit,
            )
            _fault_cleared(sessions, site.id, resource_type)
        if source.complete_listing:
            retire_vanished(setup, sessions, summary)
        if full:
            with sessions.begin() as session:
                state.mark_dirty(session, site.id, setup.roster.subject_ids)
        derive_dirty(setup, sessions, summary, stop)
        outcome = "ok"
    except SyncStopped:
        outcome = "stopped"
    except errors.ServerFault as fault:
        with sessions.begin() as session:
            server_faults.record(session, site.id, fault)
        raise
    finally:
        # Sources that talk HTTP count their requests (adapter.fhir.http); a folder makes none.
        summary.ehr_requests = getattr(source, "requests_made", 0)
        finish_run(sessions, summary, outcome, started)
    return summary


def _fault_cleared(sessions: sessionmaker[Session], site_id: str, resource_type: str) -> None:
    """A type read to the end without a server fault: an open ``server_fault`` issue of it resolves."""
    with sessions.begin() as session:
        if server_faults.is_open(session, site_id, resource_type):
            server_faults.clear(session, site_id, resource_type)


@collector.sparing
def remap_site(
    setup: SiteSetup,
    sessions: sessionmaker[Session],
    *,
    everything: bool = False,
    validation: Mode = "lean",
    progress: RemapProgress | None = None,
) -> SyncSummary:
    """Re-map the stored source resources of a site without fetching anything.

    After a catalog or site-override change (a data manager's fix), every
    stored resource mapped with another catalog version is mapped again and
    its subjects re-derived; the issues the fix resolves close themselves.
    ``everything`` re-maps all stored resources regardless of version;
    ``validation`` as for ``sync_site``; ``progress`` is told after each
    page how many of the stale resources are re-mapped (the records are
    re-derived after the last).
    """
    started = time.monotonic()
    summary = SyncSummary(site=setup.site.id)
    with sessions.begin() as session:
        summary.run_id = open_run(session, setup.site.id)
        subjects = linked_subjects(session, setup.site.id)
    ctx = engine.SiteContext(
        site=setup.site.id,
        timezone=zoneinfo.ZoneInfo(setup.site.timezone),
        catalog=setup.catalog,
        subjects=subjects,
    )
    outcome = "failed"
    try:
        remap_stored(
            sessions,
            ctx,
            summary,
            set(),
            everything=everything,
            validation=validation,
            should_stop=lambda: False,
            progress=progress,
        )
        derive_dirty(setup, sessions, summary, lambda: False)
        outcome = "ok"
    finally:
        finish_run(sessions, summary, outcome, started)
    return summary
