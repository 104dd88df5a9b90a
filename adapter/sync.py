"""One sync pass for one site: read → parse → map → derive → store → outbox.

Data moves forward only (DESIGN.md §1).  The pass is idempotent and
resumable: a source resource whose (id, version) was already mapped with the
current catalog is skipped, work is committed in pages, and a crash at any
point leaves a state from which the next pass continues without losing or
duplicating anything (records are compared by content hash before anything
is enqueued).  A catalog change re-maps the stored resources it affects, so a
mapping fix flows into the records without re-fetching.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import zoneinfo
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic
import sqlalchemy as sa
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter import errors, privacy, roster
from adapter.fhir import factory as source_factory
from adapter.fhir import ndjson
from adapter.fhir.source import Source
from adapter.mapping import catalog as catalog_mod
from adapter.mapping import engine
from adapter.mapping.issues import IssueKind, MappingIssue
from adapter.protocol import context, derive
from adapter.protocol import rules as rules_mod
from adapter.store import models, state
from adapter.store.models import utcnow

log = logging.getLogger(__name__)

OVERLAP = dt.timedelta(minutes=5)  # clock skew and late commits at the server (DESIGN.md §2)
MAPPED_TYPES = ("Observation", "MedicationAdministration", "Procedure")

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
    seconds: float = 0.0

    def counts(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in ("site", "outcomes")}
        data["outcomes"] = dict(self.outcomes)
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

    @classmethod
    def load(cls, config: config_mod.Config, site: config_mod.SiteConfig) -> SiteSetup:
        try:
            rules = rules_mod.load_rules(config.study.mappings, site.id)
        except rules_mod.RulesError as exc:
            raise errors.MappingError(str(exc)) from exc
        return cls(
            site=site,
            study=config.study.id,
            catalog=catalog_mod.load_catalog(config.study.mappings, site.id),
            rules=rules,
            roster=roster.load_roster(site.roster),
            secret=privacy.load_secret(config.privacy),
        )


def sync_site(
    setup: SiteSetup,
    sessions: sessionmaker[Session],
    *,
    full: bool = False,
    progress: Progress | None = None,
    source: Source | None = None,
) -> SyncSummary:
    """Run one pass for one site; return its summary.

    ``full`` ignores watermarks and re-maps every resource, even unchanged
    ones; ``source`` defaults to the one the site's config names.
    """
    started = time.monotonic()
    site = setup.site
    source = source or source_factory.make_source(site)
    summary = SyncSummary(site=site.id)
    with sessions.begin() as session:
        run = models.SyncRun(site=site.id)
        session.add(run)
        session.flush()
        summary.run_id = run.id
    log.info("sync started", extra={"site": site.id, "run_id": summary.run_id})
    outcome = "failed"
    try:
        subjects = _link_patients(setup, source, sessions, summary, progress)
        ctx = engine.SiteContext(
            site=site.id,
            timezone=zoneinfo.ZoneInfo(site.timezone),
            catalog=setup.catalog,
            subjects=subjects,
        )
        touched: set[str] = set()
        for resource_type in MAPPED_TYPES:
            touched |= _ingest(
                source, sessions, ctx, resource_type, sorted(subjects), summary, full, progress
            )
        if source.complete_listing:
            touched |= _retire_vanished(setup, sessions, summary)
        if full:
            touched |= set(setup.roster.subject_ids)
        _derive(setup, sessions, touched, summary)
        with sessions.begin() as session:
            summary.issues_resolved = state.resolve_orphaned_issues(session, site.id)
        outcome = "ok"
    finally:
        summary.seconds = round(time.monotonic() - started, 3)
        with sessions.begin() as session:
            run_row = session.get(models.SyncRun, summary.run_id)
            if run_row is not None:
                run_row.finished_at = utcnow()
                run_row.outcome = outcome
                run_row.counts = summary.counts()
        log.info(
            "sync finished",
            extra={"site": site.id, "run_id": summary.run_id, "outcome": outcome, "counts": summary.counts()},
        )
    return summary


# ----------------------------------------------------------------- patients


def _link_patients(
    setup: SiteSetup,
    source: Source,
    sessions: sessionmaker[Session],
    summary: SyncSummary,
    progress: Progress | None,
) -> dict[str, str]:
    """Match the site's Patient resources to the roster by identifier.

    Returns ``Patient/<id>`` → subject id.  Only that link is stored; the
    Patient resource itself (names, MRNs, birth date) is never kept.
    """
    site_id = setup.site.id
    with sessions.begin() as session:
        for line in source.patients():
            summary.resources_read += 1
            if progress:
                progress(1)
            if isinstance(line, ndjson.BadLine):
                _bad_line(session, site_id, line, summary)
                continue
            ref = f"Patient/{line.resource['id']}"
            subject_id = setup.roster.subject_for_identifiers(roster.patient_identifiers(line.resource))
            session.merge(models.PatientLink(site=site_id, patient_ref=ref, subject_id=subject_id))
        links = session.execute(
            sa.select(models.PatientLink.patient_ref, models.PatientLink.subject_id).where(
                models.PatientLink.site == site_id, models.PatientLink.subject_id.is_not(None)
            )
        )
        return {ref: subject for ref, subject in links if subject is not None}


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
) -> set[str]:
    """Map every new or changed resource of one type, one committed page at a time.

    The page's results and its cursor commit together; the watermark moves
    only when the last page is in, so a crash resumes from the last page and
    never skips what the interrupted pass had not reached.
    """
    touched: set[str] = set()
    model = get_fhir_model_class(resource_type)
    with sessions.begin() as session:
        cursor = _cursor(session, ctx.site, resource_type)
        since = None if full or cursor.watermark is None else _aware(cursor.watermark) - OVERLAP
        resume = None if full else cursor.resume
    watermark: dt.datetime | None = None
    pages = source.pages(resource_type, patient_refs=patient_refs, since=since, resume=resume)
    for page in pages:
        watermark = watermark or page.watermark
        with sessions.begin() as session:
            for line in page.lines:
                summary.resources_read += 1
                if isinstance(line, ndjson.BadLine):
                    _bad_line(session, ctx.site, line, summary)
                    continue
                touched |= _ingest_one(session, ctx, model, line.resource, summary, full)
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
    return touched


def _cursor(session: Session, site: str, resource_type: str) -> models.SyncCursor:
    cursor = session.get(models.SyncCursor, (site, resource_type))
    if cursor is None:
        cursor = models.SyncCursor(site=site, resource_type=resource_type)
        session.add(cursor)
    return cursor


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
) -> set[str]:
    resource_type, resource_id = raw["resourceType"], raw["id"]
    ref = f"{resource_type}/{resource_id}"
    version = _version(raw)
    row = session.get(models.SourceResource, (ctx.site, resource_type, resource_id))
    if (
        row is not None
        and not full
        and row.version == version
        and row.catalog_version == ctx.catalog.version
        and row.outcome != "deleted"
    ):
        row.last_seen_run = summary.run_id
        summary.unchanged += 1
        return set()
    patient_ref = _patient_ref(raw)
    try:
        resource = model.model_validate(raw)
    except pydantic.ValidationError as exc:
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
    if row is None:
        row = models.SourceResource(site=ctx.site, resource_type=resource_type, resource_id=resource_id)
        session.add(row)
    row.version = version
    row.patient_ref = patient_ref
    row.raw = state.canonical_json(raw).decode()
    row.catalog_version = ctx.catalog.version
    row.outcome = outcome
    row.last_seen_run = summary.run_id
    row.updated_at = utcnow()
    touched = state.replace_facts(session, ctx.site, ref, result.facts)
    state.replace_issues(session, ctx.site, ref, result.issues)
    return touched


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


def _invalid(site: str, ref: str, exc: pydantic.ValidationError, subject_id: str | None) -> MappingIssue:
    """An issue for a resource that is not valid FHIR R4.

    Only the field paths and pydantic's messages are kept, never the input
    values, which could hold PHI.
    """
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_input=False)[:3]
    )
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
    scope = f"file:{line.location}"
    issue = MappingIssue(
        site=site,
        kind=IssueKind.INVALID_RESOURCE,
        scope=scope,
        detail=f"{line.location}: {line.problem}",
    )
    state.replace_issues(session, site, scope, [issue])


def _retire_vanished(setup: SiteSetup, sessions: sessionmaker[Session], summary: SyncSummary) -> set[str]:
    """Resources no longer in the source: their facts and issues go away.

    An NDJSON folder is a complete snapshot, so a resource missing from it was
    deleted at the site; what it fed is retracted on the next derivation.
    """
    site_id = setup.site.id
    touched: set[str] = set()
    with sessions.begin() as session:
        gone = session.scalars(
            sa.select(models.SourceResource).where(
                models.SourceResource.site == site_id,
                models.SourceResource.last_seen_run < summary.run_id,
                models.SourceResource.outcome != "deleted",
            )
        )
        for row in gone:
            ref = f"{row.resource_type}/{row.resource_id}"
            touched |= state.replace_facts(session, site_id, ref, [])
            state.replace_issues(session, site_id, ref, [])
            row.outcome = "deleted"
            summary.vanished += 1
    return touched


# ----------------------------------------------------------------- derive


def _derive(
    setup: SiteSetup, sessions: sessionmaker[Session], subjects: set[str], summary: SyncSummary
) -> None:
    """Re-derive the touched subjects and enqueue what changed."""
    site_id = setup.site.id
    for subject_id in sorted(subjects):
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
                    record.model_dump(mode="json"), setup.secret, site_id
                )
                for record in derivation.records
            }
            upserts, retractions = state.reconcile_records(session, site_id, subject_id, payloads)
            state.replace_issues(session, site_id, f"derive:{subject_id}", derivation.issues)
            summary.upserts += upserts
            summary.retractions += retractions
            summary.subjects_derived += 1
