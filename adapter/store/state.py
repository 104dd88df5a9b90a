"""Writing the adapter's state: the bookkeeping steps the sync and the console share.

Each function does one step inside the caller's transaction (a resource's
facts, the subjects left to derive, the issues a source raises, an audit
entry); the caller commits.  Keeping them here (not in adapter/sync/) keeps
SQL out of the pipeline logic and gives the console and CLI the same
operations.  Derived records and their outbox items are ``records``'s job,
hashes ``hashing``'s, and the tallies the report shows ``counts``'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy import orm
from sqlalchemy.orm import Session

from adapter.mapping import facts as facts_mod
from adapter.mapping.facts import Fact
from adapter.mapping.issues import IssueKind, MappingIssue
from adapter.store import bulk_insert, models, value_lists
from adapter.store.issues_batch import PageIssues
from adapter.store.models import utcnow

_FACT_LIST: TypeAdapter[list[Fact]] = TypeAdapter(list[Fact])

# The queries the sync runs once per resource or per subject, built once with
# bound parameters: building a SQLAlchemy statement (coercing its clauses,
# computing its cache key) took longer than SQLite took to run it.
# Run through the session's connection, not the ORM: an ORM statement first
# flushed the previous resource's pending row update and ran the DELETE as an
# ORM bulk delete, which together cost over a millisecond per changed
# resource (a tenth of a site's resources in new versions took longer than a
# full sync).
_DELETE_FACTS_OF_SOURCE = sa.delete(models.FactRow).where(
    models.FactRow.site == sa.bindparam("site"), models.FactRow.source_ref == sa.bindparam("source_ref")
)
_FACTS_OF_SOURCE = (
    sa.select(models.FactRow.subject_id, models.FactRow.payload)
    .where(
        models.FactRow.site == sa.bindparam("site"), models.FactRow.source_ref == sa.bindparam("source_ref")
    )
    .order_by(models.FactRow.id)
)

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
        self.code: str | None = None
        self.code_display: str | None = None
        self.last_seen_run = 0
        self.updated_at = utcnow()


class PageRows:
    """The new source resources, facts and issues of one page, written together.

    An ORM object per row, flushed a few at a time, cost more than parsing,
    validating and mapping the resource (bench/map_bench.py); one bulk INSERT
    per table and page does the same work.  Rows go in in the order they were
    produced; a resource whose facts are replaced again within the page
    keeps only its last facts.  Issues go in with a few statements per page
    too (``issues_batch``).  ``write`` belongs in the page's transaction.
    """

    def __init__(self) -> None:
        self.sources: list[PendingSource] = []
        self.facts: dict[str, list[dict[str, Any]]] = {}  # source_ref -> fact rows
        self.issues = PageIssues()
        self.seen: dict[tuple[str, str, int], list[str]] = {}  # (site, type, run) -> ids seen unchanged

    def seen_unchanged(self, row: models.SourceResource, run_id: int) -> None:
        """A stored resource the source lists again unchanged: its last-seen run moves on with the page.

        One UPDATE per page instead of an ORM update per row: an incremental
        pass over a complete listing sees every stored resource, and their
        ORM flush was most of a pass that found nothing new.  The loaded row
        takes the value as already stored, so the ORM does not write it again.
        """
        orm.attributes.set_committed_value(row, "last_seen_run", run_id)
        self.seen.setdefault((row.site, row.resource_type, run_id), []).append(row.resource_id)

    def new_source(self, site: str, resource_type: str, resource_id: str) -> PendingSource:
        source = PendingSource(site, resource_type, resource_id)
        self.sources.append(source)
        return source

    def write(self, session: Session) -> None:
        # Straight to the session's connection: no ORM bookkeeping per row.
        connection = session.connection()
        sources = [vars(source) for source in self.sources]
        bulk_insert.insert_rows(connection, models.SourceResource, sources)
        facts = [row for rows in self.facts.values() for row in rows]
        bulk_insert.insert_rows(connection, models.FactRow, facts)
        stored = models.SourceResource
        for (site, resource_type, run_id), ids in self.seen.items():
            for among in value_lists.among_values(session, stored.resource_id, ids):
                connection.execute(
                    sa.update(stored)
                    .where(stored.site == site, stored.resource_type == resource_type, among)
                    .values(last_seen_run=run_id)
                )
        self.sources, self.facts, self.seen = [], {}, {}
        self.issues.write(session)


# ----------------------------------------------------------------- stored source resources


def stored_sources(
    session: Session,
    site: str,
    resource_type: str,
    ids: Iterable[str],
    *,
    include_deleted: bool = True,
) -> list[models.SourceResource]:
    """The stored rows of ``resource_type`` among ``ids``, a few hundred ids per query.

    Their stored ``raw`` text is not loaded: the ingest needs only an
    unchanged resource's version (a changed one gets new text) and a
    deletion only the row, so reading the old text would only cost time on
    every incremental pass.  ``include_deleted=False`` leaves out resources
    already retired.
    """
    row = models.SourceResource
    query = (
        sa.select(row).options(orm.defer(row.raw)).where(row.site == site, row.resource_type == resource_type)
    )
    if not include_deleted:
        query = query.where(row.outcome != "deleted")
    found: list[models.SourceResource] = []
    for among in value_lists.among_values(session, row.resource_id, sorted(set(ids))):
        found.extend(session.scalars(query.where(among)))
    return found


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
    A known resource's subjects count as touched only when its facts say
    something new: EHRs issue versions that change nothing the mapping reads
    (a note, a performer, the server's own bookkeeping), and such a version
    only moves its facts' provenance on (``facts.same_substance``), which no
    derivation reads.  Its facts are still rewritten, so they name the
    version stored; identical facts are left as they are.
    ``mark=False`` leaves marking the touched subjects dirty to the caller,
    who batches it per page.  With ``page`` the new rows wait there for the
    page's bulk insert; without, they are inserted at once.
    """
    payloads = [fact.model_dump_json() for fact in facts]
    connection = session.connection()  # facts are never ORM objects: nothing pending to flush first
    source = {"site": site, "source_ref": source_ref}
    touched: set[str] = set()
    changed = True  # whether the facts say something new (then their subjects are touched)
    if known:
        stored = connection.execute(_FACTS_OF_SOURCE, source).all()
        if page is None or source_ref not in page.facts:  # else a copy earlier in the page replaced them
            stored_payloads = [payload for _subject, payload in stored]
            if stored_payloads == payloads:
                return touched
            changed = not facts_mod.same_substance(stored_payloads, payloads)
        if stored:
            if changed:
                touched.update(subject_id for subject_id, _payload in stored)
            connection.execute(_DELETE_FACTS_OF_SOURCE, source)
    rows = [
        {
            "site": site,
            "subject_id": fact.subject_id,
            "source_ref": source_ref,
            "concept": fact.concept,
            "payload": payload,
        }
        for fact, payload in zip(facts, payloads, strict=True)
    ]
    if page is not None:
        page.facts.pop(source_ref, None)  # replaced again within the page
        if rows:
            page.facts[source_ref] = rows
    elif rows:
        connection.execute(sa.insert(models.FactRow), rows)
    if changed:
        touched.update(fact.subject_id for fact in facts)
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


def clear_dirty(session: Session, site: str, subject_ids: Sequence[str]) -> None:
    """The subjects are derived: one DELETE for a batch (no ORM object of them is ever loaded)."""
    for among in value_lists.among_values(session, models.DirtySubject.subject_id, subject_ids):
        session.execute(
            sa.delete(models.DirtySubject)
            .where(models.DirtySubject.site == site, among)
            .execution_options(synchronize_session=False)
        )


def subject_facts(session: Session, site: str, subject_id: str) -> list[Fact]:
    return facts_from_json(subjects_fact_payloads(session, site, [subject_id])[subject_id])


def facts_from_json(payloads: Iterable[str]) -> list[Fact]:
    """Stored fact payloads as facts: one JSON array, one call into pydantic-core, not one per fact."""
    return _FACT_LIST.validate_json("[" + ",".join(payloads) + "]")


def subjects_fact_payloads(session: Session, site: str, subject_ids: Sequence[str]) -> dict[str, list[str]]:
    """Each subject's stored fact payloads, in the order ``subject_facts`` reads them, a few queries in all.

    A batch of subjects derived together reads its facts with one query per
    few hundred subjects instead of one per subject (a round trip each on
    PostgreSQL).  The payloads stay JSON text until their subject is derived
    (``facts_from_json``), so a batch holds text, not models.
    """
    found: dict[str, list[str]] = {subject_id: [] for subject_id in subject_ids}
    fact = models.FactRow
    for among in value_lists.among_values(session, fact.subject_id, subject_ids):
        query = sa.select(fact.subject_id, fact.payload).where(fact.site == site, among).order_by(fact.id)
        for subject_id, payload in session.execute(query):
            found[subject_id].append(payload)
    return found


# ----------------------------------------------------------------- issues


def replace_issues(
    session: Session,
    site: str,
    source: str,
    issues: Iterable[MappingIssue],
    *,
    known: bool = True,
    page: PageRows | None = None,
) -> None:
    """Record that ``source`` now raises exactly ``issues`` (and no others).

    An issue already known keeps its status unless it was resolved, in which
    case it reopens: the problem is back.  An ignored issue stays ignored.
    ``known=False``: the source is new, so it raised nothing before.  With
    ``page`` the issues wait for the page's bulk write; without, they are
    written at once.  Either way ``issues_batch.PageIssues`` writes them, the
    one implementation of that lifecycle.
    """
    writer = page.issues if page is not None else PageIssues()
    writer.replace(site, source, issues, known=known)
    if page is None:
        writer.write(session)  # one source: written now, by the same statements as a page's


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


# ----------------------------------------------------------------- audit trail


def audit(session: Session, actor: str, action: str, target: str, **detail: Any) -> models.AuditEntry:
    """Record who did what to which target, in the caller's transaction.

    The only writer of the audit trail.  The entry is flushed so its id can
    be linked to at once (a fix's result page names the entry it wrote).
    """
    entry = models.AuditEntry(actor=actor, action=action, target=target, detail=detail)
    session.add(entry)
    session.flush()
    return entry
