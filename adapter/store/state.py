"""Reading and writing the adapter's state: the few operations the sync needs.

Each function does one bookkeeping step inside the caller's transaction; the
caller commits.  Keeping them here (not in adapter/sync/) keeps SQL out of the
pipeline logic and gives the console and CLI the same operations.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.orm import Session

from adapter.mapping.facts import Fact
from adapter.mapping.issues import IssueKind, MappingIssue
from adapter.store import models
from adapter.store.models import utcnow

_FACT_LIST: TypeAdapter[list[Fact]] = TypeAdapter(list[Fact])

# The queries the sync runs once per resource or per subject, built once with
# bound parameters: building a SQLAlchemy statement (coercing its clauses,
# computing its cache key) took longer than SQLite took to run it.
_SUBJECTS_OF_SOURCE = sa.select(models.FactRow.subject_id).where(
    models.FactRow.site == sa.bindparam("site"), models.FactRow.source_ref == sa.bindparam("source_ref")
)
_SUBJECT_FACTS = (
    sa.select(models.FactRow.payload)
    .where(models.FactRow.site == sa.bindparam("site"), models.FactRow.subject_id == sa.bindparam("subject"))
    .order_by(models.FactRow.id)
)
_SUBJECT_RECORDS = sa.select(models.RecordRow).where(
    models.RecordRow.site == sa.bindparam("site"), models.RecordRow.subject_id == sa.bindparam("subject")
)


def canonical_json(data: Any) -> bytes:
    """Deterministic JSON bytes: the basis of every content hash."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def content_hash(data: Any) -> str:
    return hashlib.sha256(canonical_json(data)).hexdigest()


# Record fields that say where a record came from, not what it says: a new
# catalog version alone (any mapping fix changes it) must not re-send records.
PROVENANCE_FIELDS = frozenset({"catalog_version"})


def substance_hash(payload: dict[str, Any]) -> str:
    """The hash of what a record says: its payload without its provenance fields."""
    return content_hash({k: v for k, v in payload.items() if k not in PROVENANCE_FIELDS})


# ----------------------------------------------------------------- one page of new rows


class PendingSource:
    """A source resource first seen in this page: a plain object, inserted with the page.

    It has the attributes of ``models.SourceResource`` that the sync reads and
    sets, so a second copy of the resource later in the same page finds it.
    """

    def __init__(self, site: str, resource_type: str, resource_id: str) -> None:
        self.site = site
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.version = ""
        self.patient_ref: str | None = None
        self.raw = ""
        self.catalog_version = ""
        self.outcome = ""
        self.last_seen_run = 0
        self.updated_at = utcnow()


class PageRows:
    """The new source resources and facts of one page, inserted together.

    An ORM object per row, flushed a few at a time, cost more than parsing,
    validating and mapping the resource (bench/map_bench.py); one bulk INSERT
    per table and page does the same work.  Rows go in in the order they were
    produced; a resource whose facts are replaced again within the page
    keeps only its last facts.  ``write`` belongs in the page's transaction.
    """

    def __init__(self) -> None:
        self.sources: list[PendingSource] = []
        self.facts: dict[str, list[dict[str, Any]]] = {}  # source_ref -> fact rows

    def new_source(self, site: str, resource_type: str, resource_id: str) -> PendingSource:
        source = PendingSource(site, resource_type, resource_id)
        self.sources.append(source)
        return source

    def write(self, session: Session) -> None:
        # Core executemany on the session's connection: no ORM bookkeeping per row.
        connection = session.connection()
        if self.sources:
            connection.execute(sa.insert(models.SourceResource), [vars(source) for source in self.sources])
        facts = [row for rows in self.facts.values() for row in rows]
        if facts:
            connection.execute(sa.insert(models.FactRow), facts)
        self.sources, self.facts = [], {}


# ----------------------------------------------------------------- facts


def replace_facts(
    session: Session,
    site: str,
    source_ref: str,
    facts: Sequence[Fact],
    *,
    known: bool = True,
    mark: bool = True,
    page: PageRows | None = None,
) -> set[str]:
    """Swap the facts of one source resource; return the subjects touched.

    ``known=False`` says the resource was never stored, so there are no old
    facts to look up (the common case on a first sync: half the queries).
    ``mark=False`` leaves marking the touched subjects dirty to the caller,
    who batches it per page.  With ``page`` the new rows wait there for the
    page's bulk insert instead of becoming ORM objects.
    """
    touched: set[str] = set()
    if known:
        touched |= set(session.scalars(_SUBJECTS_OF_SOURCE, {"site": site, "source_ref": source_ref}))
        session.execute(
            sa.delete(models.FactRow).where(
                models.FactRow.site == site, models.FactRow.source_ref == source_ref
            )
        )
    if page is not None:
        page.facts.pop(source_ref, None)  # replaced again within the page
        if facts:
            page.facts[source_ref] = [
                {
                    "site": site,
                    "subject_id": fact.subject_id,
                    "source_ref": source_ref,
                    "concept": fact.concept,
                    "payload": fact.model_dump_json(),
                }
                for fact in facts
            ]
            touched.update(fact.subject_id for fact in facts)
    else:
        for fact in facts:
            session.add(
                models.FactRow(
                    site=site,
                    subject_id=fact.subject_id,
                    source_ref=source_ref,
                    concept=fact.concept,
                    payload=fact.model_dump_json(),
                )
            )
            touched.add(fact.subject_id)
    if mark:
        mark_dirty(session, site, touched)
    return touched


def mark_dirty(session: Session, site: str, subjects: Iterable[str]) -> None:
    """Remember (durably, in the caller's transaction) that these subjects need deriving."""
    rows = [{"site": site, "subject_id": subject_id} for subject_id in sorted(set(subjects))]
    if rows:
        insert_ignoring_duplicates(session, models.DirtySubject, rows)


def insert_ignoring_duplicates(
    session: Session, model: type[models.Base], rows: list[dict[str, Any]]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL alike."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(model).values(rows).on_conflict_do_nothing())
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(model).values(rows).on_conflict_do_nothing())
    else:  # pragma: no cover - other databases are not supported stores
        for row in rows:
            session.merge(model(**row))


def dirty_subjects(session: Session, site: str) -> list[str]:
    return sorted(
        session.scalars(sa.select(models.DirtySubject.subject_id).where(models.DirtySubject.site == site))
    )


def clear_dirty(session: Session, site: str, subject_id: str) -> None:
    session.execute(
        sa.delete(models.DirtySubject).where(
            models.DirtySubject.site == site, models.DirtySubject.subject_id == subject_id
        )
    )


def subject_facts(session: Session, site: str, subject_id: str) -> list[Fact]:
    rows = session.scalars(_SUBJECT_FACTS, {"site": site, "subject": subject_id})
    # One JSON array, one call into pydantic-core, instead of one call per fact.
    return _FACT_LIST.validate_json("[" + ",".join(rows) + "]")


# ----------------------------------------------------------------- issues


def replace_issues(
    session: Session, site: str, source: str, issues: Iterable[MappingIssue], *, known: bool = True
) -> None:
    """Record that ``source`` now raises exactly ``issues`` (and no others).

    An issue already known keeps its status unless it was resolved, in which
    case it reopens: the problem is back.  An ignored issue stays ignored.
    ``known=False``: the source is new, so it raised nothing before.
    """
    if known:
        session.execute(
            sa.delete(models.IssueSource).where(
                models.IssueSource.site == site, models.IssueSource.source == source
            )
        )
    unique = {i.key: i for i in issues}
    if not unique:
        return  # the common case: a resource that mapped cleanly
    now = utcnow()
    for issue in unique.values():
        row = session.get(models.IssueRow, issue.key)
        if row is None:
            row = models.IssueRow(
                key=issue.key,
                site=site,
                kind=issue.kind.value,
                scope=issue.scope,
                first_seen=now,
                status="open",
            )
            session.add(row)
        elif row.status == "resolved":
            row.status, row.resolved_at = "open", None
        row.subject_id = issue.subject_id
        row.concept = issue.concept
        row.code = issue.code
        row.unit = issue.unit
        row.value = issue.value
        row.detail = issue.detail
        row.last_seen = now
        session.merge(models.IssueSource(issue_key=issue.key, site=site, source=source))


def resolve_orphaned_issues(session: Session, site: str) -> int:
    """Resolve open issues that no source raises any more (a fix took effect)."""
    raised = sa.select(models.IssueSource.issue_key).where(models.IssueSource.site == site)
    result = session.execute(
        sa.update(models.IssueRow)
        .where(
            models.IssueRow.site == site,
            models.IssueRow.status == "open",
            models.IssueRow.kind != IssueKind.DELIVERY_FAILED.value,
            models.IssueRow.key.not_in(raised),
        )
        .values(status="resolved", resolved_at=utcnow())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def open_issue_counts(session: Session, site: str | None = None) -> dict[str, int]:
    query = sa.select(models.IssueRow.kind, sa.func.count()).where(models.IssueRow.status == "open")
    if site is not None:
        query = query.where(models.IssueRow.site == site)
    return {kind: count for kind, count in session.execute(query.group_by(models.IssueRow.kind))}


# ----------------------------------------------------------------- records and outbox


def reconcile_records(
    session: Session,
    site: str,
    subject_id: str,
    payloads: dict[str, dict[str, Any]],
) -> tuple[int, int]:
    """Make the stored records of one subject equal ``payloads``; enqueue the changes.

    ``payloads`` maps record id to the outgoing (pseudonymized) JSON.  A new or
    changed record enqueues an upsert; a stored record that no longer derives
    enqueues a retraction.  Unchanged records enqueue nothing, which is what
    makes re-running a sync send nothing twice.  "Changed" means what the
    record says (``substance_hash``): a record that differs only in its
    catalog version stamp keeps the stored payload, the one the repository
    has, and is not sent again.  Returns (upserts, retractions).
    """
    stored = {
        row.record_id: row for row in session.scalars(_SUBJECT_RECORDS, {"site": site, "subject": subject_id})
    }
    upserts = retractions = 0
    now = utcnow()
    new_records: list[dict[str, Any]] = []
    outbox: list[dict[str, Any]] = []
    for record_id in sorted(payloads):
        payload = payloads[record_id]
        digest = substance_hash(payload)
        row = stored.get(record_id)
        if row is not None and not row.retracted:
            if row.content_hash == digest:
                continue
            if _same_substance(row.payload, payload):
                row.content_hash = digest  # stored before hashes left the provenance out
                continue
        body = canonical_json(payload)  # serialized once: stored record and outbox item
        record_type, text = payload["record_type"], body.decode()
        if row is None:
            new_records.append(
                {
                    "record_id": record_id,
                    "site": site,
                    "subject_id": subject_id,
                    "record_type": record_type,
                    "content_hash": digest,
                    "payload": text,
                    "retracted": False,
                    "updated_at": now,
                }
            )
        else:
            row.record_type = record_type
            row.content_hash = digest
            row.payload = text
            row.retracted = False
            row.updated_at = now
        outbox.append(_outbox_row(site, subject_id, record_id, record_type, "upsert", text, digest))
        upserts += 1
    for record_id, row in sorted(stored.items()):
        if record_id in payloads or row.retracted:
            continue
        row.retracted = True
        row.updated_at = now
        tombstone = {
            "record_id": record_id,
            "record_type": row.record_type,
            "subject_id": subject_id,
            "site": site,
        }
        body = canonical_json(tombstone)
        outbox.append(
            _outbox_row(
                site,
                subject_id,
                record_id,
                row.record_type,
                "retract",
                body.decode(),
                hashlib.sha256(body).hexdigest(),
            )
        )
        retractions += 1
    # New records and outbox items in bulk (Core executemany, in order), not as ORM objects.
    connection = session.connection()
    if new_records:
        connection.execute(sa.insert(models.RecordRow), new_records)
    if outbox:
        connection.execute(sa.insert(models.OutboxItem), outbox)
    return upserts, retractions


def _same_substance(stored_payload: str, payload: dict[str, Any]) -> bool:
    """Whether a stored record says what ``payload`` says (its provenance aside)."""
    try:
        stored = orjson.loads(stored_payload)
    except orjson.JSONDecodeError:
        return False
    return isinstance(stored, dict) and substance_hash(stored) == substance_hash(payload)


def _outbox_row(
    site: str,
    subject_id: str,
    record_id: str,
    record_type: str,
    operation: str,
    payload: str,
    digest: str,
) -> dict[str, Any]:
    return {
        "site": site,
        "subject_id": subject_id,
        "record_id": record_id,
        "record_type": record_type,
        "operation": operation,
        "payload": payload,
        "content_hash": digest,
    }


def record_counts(session: Session, site: str | None = None) -> dict[str, int]:
    query = sa.select(models.RecordRow.record_type, sa.func.count()).where(
        models.RecordRow.retracted.is_(False)
    )
    if site is not None:
        query = query.where(models.RecordRow.site == site)
    return {kind: count for kind, count in session.execute(query.group_by(models.RecordRow.record_type))}


def outbox_backlog(session: Session) -> tuple[int, dt.datetime | None]:
    """(pending items, creation time of the oldest)."""
    row = session.execute(
        sa.select(sa.func.count(), sa.func.min(models.OutboxItem.created_at)).where(
            models.OutboxItem.delivered_at.is_(None)
        )
    ).one()
    return int(row[0]), row[1]


def audit(session: Session, actor: str, action: str, target: str, **detail: Any) -> models.AuditEntry:
    """Record who did what to which target, in the caller's transaction.

    The only writer of the audit trail.  The entry is flushed so its id can
    be linked to at once (a fix's result page names the entry it wrote).
    """
    entry = models.AuditEntry(actor=actor, action=action, target=target, detail=detail)
    session.add(entry)
    session.flush()
    return entry
