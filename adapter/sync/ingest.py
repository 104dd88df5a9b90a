"""Reading one resource type from the source: page by page, from the cursor, into the state.

Each page's resources are mapped (``resources.ingest_one``) and committed
with the type's cursor, a few source pages joined into one commit
(``batches``), so a crash resumes from the last committed page;
the watermark moves only when the last page is in.  Resources a page says
were deleted at the site are retired with it (``adapter.sync.deletions``);
after a complete listing, the resources the source no longer lists are
retired too.  Either way, unless the retraction guard holds the type back.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapter.fhir.source import BadLine, Source, SourceLine
from adapter.fhir.validation import Mode
from adapter.mapping import engine
from adapter.store import models, planner, state
from adapter.store.models import utcnow
from adapter.sync import deletions, retraction_guard
from adapter.sync.batches import join_pages
from adapter.sync.resources import Row, bad_line, ingest_one, too_large
from adapter.sync.runs import Progress, StopCheck, SyncSummary
from adapter.sync.setup import SiteSetup

log = logging.getLogger(__package__)  # "adapter.sync": one logger name for the whole pass

OVERLAP = dt.timedelta(minutes=5)  # clock skew and late commits at the server (docs/design.md §2)


def ingest_type(
    source: Source,
    sessions: sessionmaker[Session],
    ctx: engine.SiteContext,
    resource_type: str,
    patient_refs: list[str],
    summary: SyncSummary,
    *,
    validation: Mode,
    full: bool,
    progress: Progress | None,
    should_stop: StopCheck,
    max_retraction_share: float,
    statistics: planner.Statistics | None = None,
    resources_per_commit: int = 1,
) -> None:
    """Map every new or changed resource of one type, one committed page at a time.

    A page here is the source's pages joined until ``resources_per_commit``
    resources are read (``adapter.sync.batches``).  The page's results, the
    deletions it reports and its cursor commit together; the watermark moves
    only when the last page is in, so a crash resumes from the last page and
    never skips what the interrupted pass had not reached.  A page's
    deletions are applied after its resources: a source reads them no
    earlier than the resources it hands on with them.
    """
    with sessions.begin() as session:
        cursor = _cursor(session, ctx.site, resource_type)
        since = None if full or cursor.watermark is None else cursor.watermark - OVERLAP
        resume = None if full else cursor.resume
    watermark: dt.datetime | None = None
    pages = source.pages(resource_type, patient_refs=patient_refs, since=since, resume=resume)
    for page in join_pages(pages, resources_per_commit, should_stop, progress):
        watermark = watermark or page.watermark
        with sessions.begin() as session:
            rows: dict[str, Row] = {**_stored_rows(session, ctx.site, resource_type, page.lines)}
            new_rows = state.PageRows()
            dirty: set[str] = set()
            for line in page.lines:
                summary.resources_read += 1
                if isinstance(line, BadLine) and line.ref is not None:
                    resource_id = line.ref.partition("/")[2]
                    row = rows.get(resource_id)
                    rows[resource_id] = too_large(session, ctx, line, summary, row, dirty, new_rows)
                    continue
                if isinstance(line, BadLine):
                    bad_line(session, ctx.site, line, summary, new_rows)
                    continue
                resource_id = line.resource["id"]
                rows[resource_id] = ingest_one(
                    session,
                    ctx,
                    resource_type,
                    line.resource,
                    summary,
                    validation=validation,
                    full=full,
                    row=rows.get(resource_id),
                    dirty=dirty,
                    page=new_rows,
                )
            new_rows.write(session)
            state.mark_dirty(session, ctx.site, dirty)
            if page.deleted:
                deletions.retire_deleted(
                    session, ctx.site, resource_type, page.deleted, summary, max_retraction_share
                )
            cursor = _cursor(session, ctx.site, resource_type)
            cursor.resume = page.cursor
            cursor.updated_at = utcnow()
        if statistics is not None:
            statistics.wrote(len(page.lines))
    with sessions.begin() as session:
        cursor = _cursor(session, ctx.site, resource_type)
        cursor.resume = None
        if watermark is not None:
            cursor.watermark = watermark
        cursor.updated_at = utcnow()


def _stored_rows(
    session: Session, site: str, resource_type: str, lines: list[SourceLine | BadLine]
) -> dict[str, models.SourceResource]:
    """The stored versions of a page's resources, a few queries instead of one per resource."""
    ids = {line.resource["id"] for line in lines if isinstance(line, SourceLine)} | {
        line.ref.partition("/")[2] for line in lines if isinstance(line, BadLine) and line.ref
    }
    return {row.resource_id: row for row in state.stored_sources(session, site, resource_type, ids)}


def _cursor(session: Session, site: str, resource_type: str) -> models.SyncCursor:
    cursor = session.get(models.SyncCursor, (site, resource_type))
    if cursor is None:
        cursor = models.SyncCursor(site=site, resource_type=resource_type)
        session.add(cursor)
    return cursor


def retire_vanished(setup: SiteSetup, sessions: sessionmaker[Session], summary: SyncSummary) -> None:
    """Resources no longer in the source: their facts and issues go away.

    A complete listing (an NDJSON folder, a full pass) is a snapshot, so a
    resource missing from it was deleted at the site; what it fed is
    retracted on the next derivation.  Unless the guard holds the type back
    (``adapter.sync.retraction_guard``): all or an unusual share of a type gone at
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
        deletions.retire(session, site_id, row, summary)
