"""One sync pass for one site: read → parse → map → derive → store → outbox.

Data moves forward only (docs/design.md §1).  The pass is idempotent and
resumable: a source resource whose (id, version) was already mapped with the
current catalog is skipped, work is committed in pages, and a crash at any
point leaves a state from which the next pass continues without losing or
duplicating anything (records are compared by content hash before anything
is enqueued).  A catalog change re-maps the stored resources it affects, so a
mapping fix flows into the records without re-fetching.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import logging
import threading
import time
import zoneinfo
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, ParamSpec, TypeVar

import orjson
import pydantic
import sqlalchemy as sa
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import orm
from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter import errors, privacy, retraction_guard, roster, server_faults
from adapter.fhir import factory as source_factory
from adapter.fhir import lean, lenient, ndjson, stored_form
from adapter.fhir.source import Source
from adapter.mapping import catalog as catalog_mod
from adapter.mapping import engine
from adapter.mapping.issues import IssueKind, MappingIssue
from adapter.protocol import context, derive
from adapter.protocol import rules as rules_mod
from adapter.store import models, state
from adapter.store.models import utcnow

log = logging.getLogger(__name__)

REMAP_PAGE = 500
OVERLAP = dt.timedelta(minutes=5)  # clock skew and late commits at the server (docs/design.md §2)
MAPPED_TYPES = ("Observation", "MedicationAdministration", "Procedure")
# The stored version of a resource the source named but did not hand over (over
# [sites.source] max_resource_bytes): no real version looks like it, so the next
# version the site sends is mapped, and re-mapping passes it by.
TOO_LARGE = "too-large"
# The stored version of a resource of a non-enrolled patient whose patient has
# since joined the roster: its body was never stored, so it cannot be re-mapped
# from the state; no real version looks like it, so the next pass maps the
# resource when the source sends it (``_requeue_unkept``).
NOT_KEPT = "not-kept"
UNKEPT_BATCH = 500  # patient refs per UPDATE when patients join the roster
# How a source resource is validated before mapping.  "lean" (default): every
# element the engine reads is validated as fhir.resources R4B would, the rest is
# ignored, at ~30x the speed (adapter/fhir/lean.py says why); "r4b": the full
# fhir.resources models, which also reject resources for elements the adapter
# never reads (e.g. to audit a site's conformance).
VALIDATION: Literal["lean", "r4b"] = "lean"

Progress = Callable[[int], None]


@dataclass
class SyncSummary:
    """What one pass did, for the CLI summary, the run log and metrics."""

    site: str
    run_id: int = 0
    resources_read: int = 0
    resources_mapped: int = 0
    unchanged: int = 0
    invalid: int = 0
    vanished: int = 0
    facts_written: int = 0
    subjects_derived: int = 0
    upserts: int = 0
    retractions: int = 0
    issues_resolved: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    # Resource type -> resources the source stopped listing whose retraction
    # the guard held back (adapter.retraction_guard); empty on a normal pass.
    held: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def counts(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in ("site", "outcomes", "held")}
        data["outcomes"] = dict(self.outcomes)
        if self.held:
            data["held"] = dict(self.held)
        return data


@dataclass(frozen=True)
class SiteSetup:
    """Everything loaded from files that a pass for one site needs."""

    site: config_mod.SiteConfig
    study: str
    catalog: catalog_mod.Catalog
    rules: rules_mod.ProtocolRules
    roster: roster.Roster
    secret: bytes
    date_shift_days: int = 0
    max_retraction_share: float = 0.05

    @classmethod
    def load(cls, config: config_mod.Config, site: config_mod.SiteConfig) -> SiteSetup:
        try:
            rules = rules_mod.load_rules(config.study.mappings, site.id)
        except rules_mod.RulesError as exc:
            raise errors.MappingError(str(exc)) from exc
        return cls(
            site=site,
            study=config.study.id,
            catalog=catalog_mod.load_catalog(config.study.mappings, site.id, config.overrides_dir()),
            rules=rules,
            roster=roster.load_roster(site.roster),
            secret=privacy.load_secret(config.privacy),
            date_shift_days=config.privacy.date_shift_days,
            max_retraction_share=config.sync.max_retraction_share,
        )


class SyncStopped(Exception):
    """Raised between pages when the service asked the pass to stop."""


StopCheck = Callable[[], bool]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class _Collector:
    """Keeps CPython's cyclic garbage collector off the objects that outlive a pass.

    A full collection walks every tracked object: the imported modules,
    SQLAlchemy's mappers, pydantic's schemas (~120,000 objects).  A pass
    allocates a few dozen short-lived containers per resource, so CPython
    runs a full collection every few thousand resources; in
    bench/map_bench.py's pipeline that was ~10 % of the sync's CPU time.
    ``gc.freeze`` sets what exists when the pass starts aside (the pass's own
    objects are still collected as usual; reference counting frees the rest);
    when the last concurrent pass ends, ``gc.unfreeze`` hands it back.

    What is garbage must not be frozen with the rest: handed back into the
    oldest generation, it waits for a full collection, which CPython never
    got to in a process running pass after pass (issue 13, item 8: ~130
    objects and ~100 KiB of RSS more per pass of a 10-patient site, without
    end; bench/soak_bench.py).  Most of it was the pass's own: SQLAlchemy
    statements, whose bind parameters hold a page's resource ids in cycles
    with their comparators.  So when the last pass ends, a full collection
    runs while the heap is still frozen (it walks only what the pass made:
    milliseconds), and each pass starts with a collection of the young
    generations.  Garbage that was alive when a pass started and died after
    it (a cycle a caller held across the pass) needs a full collection of
    the whole heap (~40 ms): one at the start of a pass, at most every
    ``FULL_EVERY`` seconds, bounds it.
    """

    FULL_EVERY = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._passes = 0
        self._full_at = -self.FULL_EVERY

    def sparing(self, func: Callable[_P, _R]) -> Callable[_P, _R]:
        """``func`` (a whole pass) run with the collector sparing what existed before it."""

        @functools.wraps(func)
        def during_pass(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            with self._lock:
                self._passes += 1
                if time.monotonic() - self._full_at >= self.FULL_EVERY:
                    gc.collect()
                    self._full_at = time.monotonic()
                else:
                    gc.collect(1)
                gc.freeze()
            try:
                return func(*args, **kwargs)
            finally:
                with self._lock:
                    self._passes -= 1
                    if not self._passes:
                        gc.collect()  # only the pass's own objects: the rest is still frozen
                        gc.unfreeze()

        return during_pass


_collector = _Collector()


@_collector.sparing
def sync_site(
    setup: SiteSetup,
    sessions: sessionmaker[Session],
    *,
    full: bool = False,
    progress: Progress | None = None,
    source: Source | None = None,
    should_stop: StopCheck | None = None,
) -> SyncSummary:
    """Run one pass for one site; return its summary.

    ``full`` ignores watermarks and re-maps every resource, even unchanged
    ones; ``source`` defaults to the one the site's config names.
    ``should_stop`` is polled between pages (SIGTERM in the service): the
    pass then ends after the current page with outcome ``stopped``; what was
    committed stays, and the next pass resumes from there.
    """
    started = time.monotonic()
    site = setup.site
    source = source or source_factory.make_source(site, catalog=setup.catalog, roster=setup.roster)
    stop = should_stop or (lambda: False)
    summary = SyncSummary(site=site.id)
    with sessions.begin() as session:
        run = models.SyncRun(site=site.id)
        session.add(run)
        session.flush()
        summary.run_id = run.id
    log.info("sync started", extra={"site": site.id, "run_id": summary.run_id})
    outcome = "failed"
    try:
        subjects, relinked = _link_patients(setup, source, sessions, summary, progress)
        ctx = engine.SiteContext(
            site=site.id,
            timezone=zoneinfo.ZoneInfo(site.timezone),
            catalog=setup.catalog,
            subjects=subjects,
        )
        _fault_cleared(sessions, site.id, "Patient")
        _remap_stored(sessions, ctx, summary, relinked, everything=False, should_stop=stop)
        for resource_type in MAPPED_TYPES:
            _ingest(source, sessions, ctx, resource_type, sorted(subjects), summary, full, progress, stop)
            _fault_cleared(sessions, site.id, resource_type)
        if source.complete_listing:
            _retire_vanished(setup, sessions, summary)
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
        _finish_run(sessions, summary, outcome, started)
    return summary


def _fault_cleared(sessions: sessionmaker[Session], site_id: str, resource_type: str) -> None:
    """A type read to the end without a server fault: an open ``server_fault`` issue of it resolves."""
    with sessions.begin() as session:
        if server_faults.is_open(session, site_id, resource_type):
            server_faults.clear(session, site_id, resource_type)


@_collector.sparing
def remap_site(
    setup: SiteSetup,
    sessions: sessionmaker[Session],
    *,
    everything: bool = False,
) -> SyncSummary:
    """Re-map the stored source resources of a site without fetching anything.

    After a catalog or site-override change (a data manager's fix), every
    stored resource mapped with another catalog version is mapped again and
    its subjects re-derived; the issues the fix resolves close themselves.
    ``everything`` re-maps all stored resources regardless of version.
    """
    started = time.monotonic()
    summary = SyncSummary(site=setup.site.id)
    with sessions.begin() as session:
        run = models.SyncRun(site=setup.site.id)
        session.add(run)
        session.flush()
        summary.run_id = run.id
        links = session.execute(
            sa.select(models.PatientLink.patient_ref, models.PatientLink.subject_id).where(
                models.PatientLink.site == setup.site.id, models.PatientLink.subject_id.is_not(None)
            )
        )
        subjects = {ref: subject for ref, subject in links if subject is not None}
    ctx = engine.SiteContext(
        site=setup.site.id,
        timezone=zoneinfo.ZoneInfo(setup.site.timezone),
        catalog=setup.catalog,
        subjects=subjects,
    )
    outcome = "failed"
    try:
        _remap_stored(sessions, ctx, summary, set(), everything=everything, should_stop=lambda: False)
        derive_dirty(setup, sessions, summary, lambda: False)
        outcome = "ok"
    finally:
        _finish_run(sessions, summary, outcome, started)
    return summary


def _finish_run(sessions: sessionmaker[Session], summary: SyncSummary, outcome: str, started: float) -> None:
    summary.seconds = round(time.monotonic() - started, 3)
    with sessions.begin() as session:
        if outcome == "ok":
            summary.issues_resolved = state.resolve_orphaned_issues(session, summary.site)
        run_row = session.get(models.SyncRun, summary.run_id)
        if run_row is not None:
            run_row.finished_at = utcnow()
            run_row.outcome = outcome
            run_row.counts = summary.counts()
    log.info(
        "sync finished",
        extra={
            "site": summary.site,
            "run_id": summary.run_id,
            "outcome": outcome,
            "counts": summary.counts(),
        },
    )


# ----------------------------------------------------------------- patients


def _link_patients(
    setup: SiteSetup,
    source: Source,
    sessions: sessionmaker[Session],
    summary: SyncSummary,
    progress: Progress | None,
) -> tuple[dict[str, str], set[str]]:
    """Match the site's Patient resources to the roster by identifier.

    Returns ``Patient/<id>`` → subject id, and the patient refs whose link
    changed (e.g. a patient just added to the roster), whose stored resources
    must be mapped again.  Only the link is stored; the Patient resource
    itself (names, MRNs, birth date) is never kept.  A patient who joins the
    roster (no subject before, one now) may have resources stored without a
    body; ``_requeue_unkept`` has those read from the source again.
    """
    site_id = setup.site.id
    relinked: set[str] = set()
    joined: set[str] = set()
    with sessions.begin() as session:
        # The site's stored links in one query, not one SELECT per Patient line.
        query = sa.select(models.PatientLink).where(models.PatientLink.site == site_id)
        stored = {link.patient_ref: link for link in session.scalars(query)}
        for line in source.patients():
            summary.resources_read += 1
            if progress:
                progress(1)
            if isinstance(line, ndjson.BadLine):
                _bad_line(session, site_id, line, summary)
                continue
            ref = f"Patient/{line.resource['id']}"
            subject_id = setup.roster.subject_for_identifiers(roster.patient_identifiers(line.resource))
            link = stored.get(ref)
            if link is None:
                stored[ref] = models.PatientLink(site=site_id, patient_ref=ref, subject_id=subject_id)
                session.add(stored[ref])
                if subject_id is not None:
                    joined.add(ref)
            elif link.subject_id != subject_id:
                if link.subject_id is None:
                    joined.add(ref)
                link.subject_id = subject_id
                relinked.add(ref)
        _requeue_unkept(session, site_id, joined)
        links = session.execute(
            sa.select(models.PatientLink.patient_ref, models.PatientLink.subject_id).where(
                models.PatientLink.site == site_id, models.PatientLink.subject_id.is_not(None)
            )
        )
        subjects = {ref: subject for ref, subject in links if subject is not None}
        _report_unfound_subjects(session, setup, set(subjects.values()))
        return subjects, relinked


def _requeue_unkept(session: Session, site_id: str, joined: set[str]) -> None:
    """Have the resources of patients who just joined the roster read and mapped again.

    A resource of a patient not on the roster is stored without its body
    (``_kept_raw``), so when the patient joins, ``_remap_stored`` has nothing
    to map.  Instead its stored version becomes ``NOT_KEPT``, so the next time
    the source sends it, it is mapped although unchanged, and the site's
    cursors (watermarks and resume points) are cleared, so that this very
    pass, which reads the sources right after linking, reads every type in
    full: an incremental search or ``_since`` export would not send an
    unchanged resource again.  Both commit with the links, so a pass that
    stops early leaves the next one the same work.  Nothing happens when no
    such row exists: the usual new patient (a first pass, a REST or Bulk
    source that never handed over the patient's data) costs one query per
    ``UNKEPT_BATCH`` patients, not a full read.
    """
    refs = sorted(joined)
    marked = 0
    for start in range(0, len(refs), UNKEPT_BATCH):
        result = session.execute(
            sa.update(models.SourceResource)
            .where(
                models.SourceResource.site == site_id,
                models.SourceResource.patient_ref.in_(refs[start : start + UNKEPT_BATCH]),
                models.SourceResource.version != TOO_LARGE,
                models.SourceResource.outcome != "deleted",
            )
            .values(version=NOT_KEPT)
            .execution_options(synchronize_session=False)
        )
        marked += int(result.rowcount or 0)  # type: ignore[attr-defined]
    if marked:
        session.execute(
            sa.update(models.SyncCursor)
            .where(models.SyncCursor.site == site_id)
            .values(watermark=None, resume=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        log.info(
            "patients joined the roster with resources stored without their body: reading the site in full",
            extra={"site": site_id, "patients": len(joined), "resources": marked},
        )


def _report_unfound_subjects(session: Session, setup: SiteSetup, found: set[str]) -> None:
    """One issue per roster subject no Patient at the site has matched yet; gone once one does.

    Without it an enrolled subject whose identifier is mistyped in the roster
    (or written with another identifier system than the site's) would just
    deliver nothing.  The links are the stored ones, so an incremental source
    that returns only changed Patients does not make found subjects look lost.
    The message names the roster line's subject and system, never the MRN.
    """
    site_id = setup.site.id
    for entry in setup.roster.entries:
        scope = f"subject:{entry.subject_id}"
        issues = []
        if entry.subject_id not in found:
            issues.append(
                MappingIssue(
                    site=site_id,
                    kind=IssueKind.SUBJECT_NOT_FOUND,
                    scope=scope,
                    subject_id=entry.subject_id,
                    detail=(
                        f"subject {entry.subject_id} is on the roster, but no Patient at site {site_id} "
                        f"carries its identifier (system {entry.identifier_system[:80]}); check the "
                        "roster's value and system against the EHR, or the source's patient search"
                    ),
                )
            )
        state.replace_issues(session, site_id, scope, issues)


def _remap_stored(
    sessions: sessionmaker[Session],
    ctx: engine.SiteContext,
    summary: SyncSummary,
    relinked: set[str],
    *,
    everything: bool,
    should_stop: StopCheck,
) -> None:
    """Map stored resources again when the catalog or a patient link changed.

    An incremental source will not send an unchanged resource again, so a
    mapping fix must reach the stored copy; one page per transaction.
    A resource stored without its body (``_kept_raw``: its patient is not on
    the roster) cannot be mapped again and need not be: while its patient
    stays off the roster no catalog changes its outcome (the patient is
    checked before anything the catalog decides), so it only takes the new
    catalog version.  When its patient joins, ``_requeue_unkept`` has the
    source send it again.
    """
    stale = sa.select(models.SourceResource).where(
        models.SourceResource.site == ctx.site, models.SourceResource.outcome != "deleted"
    )
    if not everything:
        stale = stale.where(
            sa.or_(
                models.SourceResource.catalog_version != ctx.catalog.version,
                models.SourceResource.patient_ref.in_(sorted(relinked)),
            )
        )
    with sessions() as session:
        keys = [
            (row.resource_type, row.resource_id)
            for row in session.execute(
                stale.with_only_columns(
                    models.SourceResource.resource_type, models.SourceResource.resource_id
                )
            )
        ]
    for start in range(0, len(keys), REMAP_PAGE):
        if should_stop():
            raise SyncStopped
        with sessions.begin() as session:
            dirty: set[str] = set()
            new_rows = state.PageRows()
            for resource_type, resource_id in keys[start : start + REMAP_PAGE]:
                row = session.get(models.SourceResource, (ctx.site, resource_type, resource_id))
                if row is None or row.version in (TOO_LARGE, NOT_KEPT):
                    continue  # gone, or only its reference is stored: nothing to map again
                raw = orjson.loads(row.raw)
                if not _has_body(raw):
                    if _off_roster(row.patient_ref, ctx):
                        row.catalog_version = ctx.catalog.version
                    continue
                model = model_for(resource_type)
                _ingest_one(
                    session,
                    ctx,
                    model,
                    raw,
                    summary,
                    True,
                    row,
                    dirty,
                    seen_run=row.last_seen_run,
                    page=new_rows,
                )
            new_rows.write(session)
            state.mark_dirty(session, ctx.site, dirty)


# ----------------------------------------------------------------- ingest


def _ingest(
    source: Source,
    sessions: sessionmaker[Session],
    ctx: engine.SiteContext,
    resource_type: str,
    patient_refs: list[str],
    summary: SyncSummary,
    full: bool,
    progress: Progress | None,
    should_stop: StopCheck,
) -> None:
    """Map every new or changed resource of one type, one committed page at a time.

    The page's results and its cursor commit together; the watermark moves
    only when the last page is in, so a crash resumes from the last page and
    never skips what the interrupted pass had not reached.
    """
    model = model_for(resource_type)
    with sessions.begin() as session:
        cursor = _cursor(session, ctx.site, resource_type)
        since = None if full or cursor.watermark is None else _aware(cursor.watermark) - OVERLAP
        resume = None if full else cursor.resume
    watermark: dt.datetime | None = None
    pages = source.pages(resource_type, patient_refs=patient_refs, since=since, resume=resume)
    for page in pages:
        if should_stop():
            raise SyncStopped
        watermark = watermark or page.watermark
        with sessions.begin() as session:
            rows: dict[str, models.SourceResource | state.PendingSource] = {
                **_stored_rows(session, ctx.site, resource_type, page.lines)
            }
            new_rows = state.PageRows()
            dirty: set[str] = set()
            for line in page.lines:
                summary.resources_read += 1
                if isinstance(line, ndjson.BadLine) and line.ref is not None:
                    resource_id = line.ref.partition("/")[2]
                    row = rows.get(resource_id)
                    rows[resource_id] = _too_large(session, ctx, line, summary, row, dirty, new_rows)
                    continue
                if isinstance(line, ndjson.BadLine):
                    _bad_line(session, ctx.site, line, summary)
                    continue
                resource_id = line.resource["id"]
                rows[resource_id] = _ingest_one(
                    session,
                    ctx,
                    model,
                    line.resource,
                    summary,
                    full,
                    rows.get(resource_id),
                    dirty,
                    page=new_rows,
                )
            new_rows.write(session)
            state.mark_dirty(session, ctx.site, dirty)
            cursor = _cursor(session, ctx.site, resource_type)
            cursor.resume = page.cursor
            cursor.updated_at = utcnow()
        if progress:
            progress(len(page.lines))
    with sessions.begin() as session:
        cursor = _cursor(session, ctx.site, resource_type)
        cursor.resume = None
        if watermark is not None:
            cursor.watermark = watermark
        cursor.updated_at = utcnow()


def _stored_rows(
    session: Session, site: str, resource_type: str, lines: list[ndjson.SourceLine | ndjson.BadLine]
) -> dict[str, models.SourceResource]:
    """The stored versions of a page's resources, in one query instead of one per resource.

    The stored ``raw`` text is not loaded: an unchanged resource needs only its
    version, and a changed one gets new text, so reading the old would only
    cost time on every incremental pass.
    """
    ids = sorted(
        {line.resource["id"] for line in lines if isinstance(line, ndjson.SourceLine)}
        | {line.ref.partition("/")[2] for line in lines if isinstance(line, ndjson.BadLine) and line.ref}
    )
    if not ids:
        return {}
    query = (
        sa.select(models.SourceResource)
        .options(orm.defer(models.SourceResource.raw))
        .where(
            models.SourceResource.site == site,
            models.SourceResource.resource_type == resource_type,
            models.SourceResource.resource_id.in_(ids),
        )
    )
    return {row.resource_id: row for row in session.scalars(query)}


def _cursor(session: Session, site: str, resource_type: str) -> models.SyncCursor:
    cursor = session.get(models.SyncCursor, (site, resource_type))
    if cursor is None:
        cursor = models.SyncCursor(site=site, resource_type=resource_type)
        session.add(cursor)
    return cursor


def model_for(resource_type: str) -> Any:
    """The model a resource of this type is validated with (see ``VALIDATION``)."""
    model = lean.model_for(resource_type) if VALIDATION == "lean" else None
    return model if model is not None else get_fhir_model_class(resource_type)


def _aware(moment: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes for timezone-aware columns: they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _ingest_one(
    session: Session,
    ctx: engine.SiteContext,
    model: Any,
    raw: dict[str, Any],
    summary: SyncSummary,
    full: bool,
    row: models.SourceResource | state.PendingSource | None,
    dirty: set[str],
    seen_run: int | None = None,
    page: state.PageRows | None = None,
) -> models.SourceResource | state.PendingSource:
    """Map one raw resource unless this exact version was already mapped.

    ``row`` is the stored version (None: never seen).  Facts and issues are
    written in the caller's transaction and the subjects they feed are added
    to ``dirty``, which the caller marks in the same transaction.
    ``seen_run`` keeps a re-mapped stored resource's last-seen run
    (re-mapping is not seeing it at the source).  With ``page``, a new source
    row and the facts wait there for the page's bulk insert, which the caller
    writes before it commits.  Returns the stored (or pending) row.
    """
    resource_type, resource_id = raw["resourceType"], raw["id"]
    ref = f"{resource_type}/{resource_id}"
    version = _version(raw)
    if (
        row is not None
        and not full
        and row.version == version
        and row.catalog_version == ctx.catalog.version
        and row.outcome != "deleted"
    ):
        row.last_seen_run = summary.run_id
        summary.unchanged += 1
        return row
    patient_ref = _patient_ref(raw)
    try:
        resource = lenient.validate(model, raw, ctx.timezone)
    except (pydantic.ValidationError, KeyError, TypeError, ValueError) as exc:
        # fhir.resources raises KeyError for a contained resource of an unknown
        # type; any failure to read one resource must cost that resource only.
        result = engine.MappingResult(
            issues=[_invalid(ctx.site, ref, exc, ctx.subjects.get(patient_ref or ""))]
        )
        summary.invalid += 1
    else:
        result = engine.map_resource(resource, version, ctx)
    outcome = "mapped" if result.facts else ("ignored" if result.ignored else "issue")
    summary.outcomes[outcome] += 1
    summary.resources_mapped += 1
    summary.facts_written += len(result.facts)
    known = row is not None
    if row is None and page is not None:
        row = page.new_source(ctx.site, resource_type, resource_id)
    elif row is None:
        row = models.SourceResource(site=ctx.site, resource_type=resource_type, resource_id=resource_id)
        session.add(row)
    row.version = version
    row.patient_ref = patient_ref
    row.raw = _kept_raw(raw, patient_ref, ctx)
    row.catalog_version = ctx.catalog.version
    row.outcome = outcome
    row.last_seen_run = summary.run_id if seen_run is None else seen_run
    row.updated_at = utcnow()
    dirty |= state.replace_facts(session, ctx.site, ref, result.facts, known=known, mark=False, page=page)
    state.replace_issues(session, ctx.site, ref, result.issues, known=known)
    return row


def _kept_raw(raw: dict[str, Any], patient_ref: str | None, ctx: engine.SiteContext) -> str:
    """What of a source resource the state keeps: what re-mapping reads, or only its name.

    Of a roster patient's resource, the fields the engine reads
    (``stored_form``).  Of a resource whose patient is not on the roster,
    nothing but ``resourceType`` and ``id``: a non-enrolled patient's data
    never reaches the state database, whichever source handed it over.  The
    row keeps the bookkeeping (version, patient reference, outcome, last
    seen run), so an unchanged resource is still skipped, a vanished one
    retired, and the ``patient_not_on_roster`` issue (which names only the
    patient reference) still asks a data manager to enrol or ignore.  The
    console's glimpse of such a resource shows only its type.

    A resource that names no patient at all (``unknown_subject``) keeps its
    minimised body: it is no identified patient's data, and the data manager
    needs its code, value and time to find it in the EHR and have the site
    fix it.
    """
    if _off_roster(patient_ref, ctx):
        return state.canonical_json({"resourceType": raw["resourceType"], "id": raw["id"]}).decode()
    return state.canonical_json(stored_form.for_storage(raw)).decode()  # what re-mapping reads, no more


def _off_roster(patient_ref: str | None, ctx: engine.SiteContext) -> bool:
    """Whether the resource names a patient (``_patient_ref``) that is not linked to a roster subject."""
    return bool(patient_ref) and patient_ref not in ctx.subjects


def _has_body(raw: dict[str, Any]) -> bool:
    """False for a stored resource kept only by name (``_kept_raw``, ``_too_large``)."""
    return not raw.keys() <= {"resourceType", "id"}


def _version(raw: dict[str, Any]) -> str:
    """versionId when the server gives one, else a hash of the content."""
    meta = raw.get("meta")
    version_id = meta.get("versionId") if isinstance(meta, dict) else None
    if isinstance(version_id, str) and version_id:
        return f"v:{version_id}"[:80]
    return "sha256:" + state.content_hash(raw)[:64]


def _patient_ref(raw: dict[str, Any]) -> str | None:
    subject = raw.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(reference, str):
        return None
    return "/".join(reference.split("/_history/")[0].rstrip("/").split("/")[-2:])


def _invalid(site: str, ref: str, exc: Exception, subject_id: str | None) -> MappingIssue:
    """An issue for a resource that is not valid FHIR R4.

    Only the field paths and pydantic's messages are kept, never the input
    values, which could hold PHI; for other errors only the error's type.
    """
    if isinstance(exc, pydantic.ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors(include_input=False)[:3]
        )
    else:
        problems = f"the resource could not be read ({type(exc).__name__})"
    return MappingIssue(
        site=site,
        kind=IssueKind.INVALID_RESOURCE,
        scope=ref,
        subject_id=subject_id,
        detail=f"{ref} is not valid FHIR R4: {problems}",
        source_refs=(ref,),
    )


def _bad_line(session: Session, site: str, line: ndjson.BadLine, summary: SyncSummary) -> None:
    summary.invalid += 1
    scope = line.ref or f"file:{line.location}"
    issue = MappingIssue(
        site=site,
        kind=IssueKind.INVALID_RESOURCE,
        scope=scope,
        detail=f"{line.location}: {line.problem}",
        source_refs=(line.ref,) if line.ref else (),
    )
    state.replace_issues(session, site, scope, [issue])


def _too_large(
    session: Session,
    ctx: engine.SiteContext,
    line: ndjson.BadLine,
    summary: SyncSummary,
    row: models.SourceResource | state.PendingSource | None,
    dirty: set[str],
    page: state.PageRows,
) -> models.SourceResource | state.PendingSource:
    """A resource the source named but did not hand over: larger than ``max_resource_bytes``.

    It is an ``invalid_resource`` issue on the resource itself, and what an
    earlier version of it fed is taken back, as for any invalid version.  Of
    the resource only its reference is stored (``TOO_LARGE``), never its body.
    """
    ref = line.ref or line.location
    resource_type, _sep, resource_id = ref.partition("/")
    summary.invalid += 1
    summary.outcomes["issue"] += 1
    known = row is not None
    if row is None:
        row = page.new_source(ctx.site, resource_type, resource_id)
    row.version = TOO_LARGE
    row.patient_ref = line.patient_ref
    row.raw = state.canonical_json({"resourceType": resource_type, "id": resource_id}).decode()
    row.catalog_version = ctx.catalog.version
    row.outcome = "issue"
    row.last_seen_run = summary.run_id
    row.updated_at = utcnow()
    issue = MappingIssue(
        site=ctx.site,
        kind=IssueKind.INVALID_RESOURCE,
        scope=ref,
        subject_id=ctx.subjects.get(line.patient_ref or ""),
        detail=f"{ref}: {line.problem}",
        source_refs=(ref,),
    )
    dirty |= state.replace_facts(session, ctx.site, ref, [], known=known, mark=False, page=page)
    state.replace_issues(session, ctx.site, ref, [issue], known=known)
    return row


def _retire_vanished(setup: SiteSetup, sessions: sessionmaker[Session], summary: SyncSummary) -> None:
    """Resources no longer in the source: their facts and issues go away.

    A complete listing (an NDJSON folder, a full pass) is a snapshot, so a
    resource missing from it was deleted at the site; what it fed is
    retracted on the next derivation.  Unless the guard holds the type back
    (``adapter.retraction_guard``): all or an unusual share of a type gone at
    once is far more often an empty export than a real deletion.
    """
    site_id = setup.site.id
    with sessions.begin() as session:
        for counts in retraction_guard.vanished_counts(session, site_id, summary.run_id):
            accepted = retraction_guard.use_approval(session, site_id, counts.resource_type, summary.run_id)
            suspicious = retraction_guard.is_suspicious(counts, setup.max_retraction_share)
            if suspicious and counts.vanished > accepted:
                retraction_guard.hold(session, site_id, counts)
                summary.held[counts.resource_type] = counts.vanished
                log.warning(
                    "retraction held back",
                    extra={
                        "site": site_id,
                        "resource_type": counts.resource_type,
                        "vanished": counts.vanished,
                        "stored": counts.stored,
                    },
                )
                continue
            retraction_guard.release(session, site_id, counts.resource_type)
            if counts.vanished:
                _retire(session, site_id, counts.resource_type, summary)


def _retire(session: Session, site_id: str, resource_type: str, summary: SyncSummary) -> None:
    gone = session.scalars(
        sa.select(models.SourceResource).where(
            models.SourceResource.site == site_id,
            models.SourceResource.resource_type == resource_type,
            models.SourceResource.last_seen_run < summary.run_id,
            models.SourceResource.outcome != "deleted",
        )
    )
    for row in gone:
        ref = f"{row.resource_type}/{row.resource_id}"
        state.replace_facts(session, site_id, ref, [])
        state.replace_issues(session, site_id, ref, [])
        row.outcome = "deleted"
        summary.vanished += 1


# ----------------------------------------------------------------- derive


def derive_dirty(
    setup: SiteSetup, sessions: sessionmaker[Session], summary: SyncSummary, should_stop: StopCheck
) -> None:
    """Re-derive every subject marked dirty and enqueue what changed.

    One transaction per subject stores its records, enqueues the changes and
    clears its dirty mark together.
    """
    site_id = setup.site.id
    with sessions() as session:
        subjects = state.dirty_subjects(session, site_id)
    for subject_id in subjects:
        if should_stop():
            raise SyncStopped
        entry = setup.roster.entry(subject_id)
        with sessions.begin() as session:
            facts = state.subject_facts(session, site_id, subject_id)
            subject = context.SubjectContext(
                study=setup.study,
                site=site_id,
                subject_id=subject_id,
                enrolment_date=entry.enrolment_date if entry else None,
                catalog_version=setup.catalog.version,
            )
            derivation = derive.derive_subject(facts, subject, setup.rules)
            payloads = {
                record.record_id: privacy.pseudonymize_record(
                    record.model_dump(mode="json"),
                    setup.secret,
                    site_id,
                    max_date_shift_days=setup.date_shift_days,
                )
                for record in derivation.records
            }
            upserts, retractions = state.reconcile_records(session, site_id, subject_id, payloads)
            state.replace_issues(session, site_id, f"derive:{subject_id}", derivation.issues)
            state.clear_dirty(session, site_id, subject_id)
            summary.upserts += upserts
            summary.retractions += retractions
            summary.subjects_derived += 1
