"""One source resource into the state: validated, mapped, and kept minimised.

Both the ingest (resources the source hands over) and the re-map (resources
already stored) go through ``ingest_one``: the version check that skips an
unchanged resource, validation (``adapter.fhir.validation``), mapping, and
the stored row with only what re-mapping reads.  A line the source could
not hand over (unreadable, too large) becomes an ``invalid_resource`` issue
here too.
"""

from __future__ import annotations

from typing import Any

import pydantic
from sqlalchemy.orm import Session

from adapter.fhir import stored_form
from adapter.fhir.source import BadLine
from adapter.fhir.validation import Mode, validate
from adapter.mapping import engine
from adapter.mapping.issues import IssueKind, MappingIssue
from adapter.store import hashing, models, state
from adapter.store.models import utcnow
from adapter.sync.runs import SyncSummary

# The stored version of a resource the source named but did not hand over (over
# [sites.source] max_resource_bytes): no real version looks like it, so the next
# version the site sends is mapped, and re-mapping passes it by.
TOO_LARGE = "too-large"
# The stored version of a resource of a non-enrolled patient whose patient has
# since joined the roster: its body was never stored, so it cannot be re-mapped
# from the state; no real version looks like it, so the next pass maps the
# resource when the source sends it (``patients._requeue_unkept``).
NOT_KEPT = "not-kept"

Row = models.SourceResource | state.PendingSource


def ingest_one(
    session: Session,
    ctx: engine.SiteContext,
    listed_type: str,
    raw: dict[str, Any],
    summary: SyncSummary,
    *,
    validation: Mode,
    full: bool,
    row: Row | None,
    dirty: set[str],
    seen_run: int | None = None,
    page: state.PageRows | None = None,
) -> Row:
    """Map one raw resource unless this exact version was already mapped.

    ``listed_type`` is the type the source listed it under, whose model
    validates it in mode ``validation``.  ``row`` is the stored version
    (None: never seen).  Facts and issues are written in the caller's
    transaction and the subjects they feed are added to ``dirty``, which the
    caller marks in the same transaction.  ``seen_run`` keeps a re-mapped
    stored resource's last-seen run (re-mapping is not seeing it at the
    source).  With ``page``, a new source row, the facts and the issues wait
    there for the page's bulk write, which the caller does before it commits.
    Returns the stored (or pending) row.
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
        if page is not None and isinstance(row, models.SourceResource):
            page.seen_unchanged(row, summary.run_id)
        else:
            row.last_seen_run = summary.run_id
        summary.unchanged += 1
        return row
    patient_ref = _patient_ref(raw)
    try:
        resource = validate(listed_type, raw, validation, ctx.timezone)
    except (pydantic.ValidationError, KeyError, TypeError, ValueError) as exc:
        # fhir.resources raises KeyError for a contained resource of an unknown
        # type; any failure to read one resource must cost that resource only.
        result = engine.MappingResult(
            issues=[_invalid(ctx.site, ref, exc, ctx.subjects.get(patient_ref or ""))]
        )
        summary.invalid += 1
    else:
        result = engine.map_resource(resource, version, ctx)
    outcome = _outcome(result)
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
    row.code = result.outside.code if result.outside else None
    row.code_display = result.outside.display if result.outside else None
    row.last_seen_run = summary.run_id if seen_run is None else seen_run
    row.updated_at = utcnow()
    dirty |= state.replace_facts(session, ctx.site, ref, result.facts, known=known, mark=False, page=page)
    state.replace_issues(session, ctx.site, ref, result.issues, known=known, page=page)
    return row


def _outcome(result: engine.MappingResult) -> str:
    """The stored resource's outcome (``models.SourceResource.outcome``).

    A dose not given keeps a fact that never counts, so what the site recorded
    (``not-given``, ``not-done``, ``withdrawn``) comes before whether facts came of it.
    """
    if result.not_counted is not None:
        return result.not_counted.value
    if result.facts:
        return "mapped"
    if result.ignored:
        return "ignored"
    return "outside" if result.outside else "issue"


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
    if off_roster(patient_ref, ctx):
        return hashing.canonical_json({"resourceType": raw["resourceType"], "id": raw["id"]}).decode()
    return hashing.canonical_json(stored_form.for_storage(raw)).decode()  # what re-mapping reads, no more


def off_roster(patient_ref: str | None, ctx: engine.SiteContext) -> bool:
    """Whether the resource names a patient (``_patient_ref``) that is not linked to a roster subject."""
    return bool(patient_ref) and patient_ref not in ctx.subjects


def has_body(raw: dict[str, Any]) -> bool:
    """False for a stored resource kept only by name (``_kept_raw``, ``too_large``)."""
    return not raw.keys() <= {"resourceType", "id"}


def _version(raw: dict[str, Any]) -> str:
    """versionId when the server gives one, else a hash of the content."""
    meta = raw.get("meta")
    version_id = meta.get("versionId") if isinstance(meta, dict) else None
    if isinstance(version_id, str) and version_id:
        return f"v:{version_id}"[:80]
    return "sha256:" + hashing.content_hash(raw)[:64]


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


def bad_line(
    session: Session, site: str, line: BadLine, summary: SyncSummary, page: state.PageRows | None = None
) -> None:
    """A source line that is no resource at all: an ``invalid_resource`` issue on the line.

    With ``page`` the issue waits for the page's bulk write.
    """
    summary.invalid += 1
    scope = line.ref or f"file:{line.location}"
    issue = MappingIssue(
        site=site,
        kind=IssueKind.INVALID_RESOURCE,
        scope=scope,
        detail=f"{line.location}: {line.problem}",
        source_refs=(line.ref,) if line.ref else (),
    )
    state.replace_issues(session, site, scope, [issue], page=page)


def too_large(
    session: Session,
    ctx: engine.SiteContext,
    line: BadLine,
    summary: SyncSummary,
    row: Row | None,
    dirty: set[str],
    page: state.PageRows,
) -> Row:
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
    row.raw = hashing.canonical_json({"resourceType": resource_type, "id": resource_id}).decode()
    row.catalog_version = ctx.catalog.version
    row.outcome = "issue"
    row.code = row.code_display = None
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
    state.replace_issues(session, ctx.site, ref, [issue], known=known, page=page)
    return row
