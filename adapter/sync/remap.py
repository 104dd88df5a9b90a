"""Mapping stored resources again, without the source: after a catalog or patient-link change.

An incremental source will not send an unchanged resource again, so a
mapping fix (a new catalog version) or a patient newly linked to a subject
must reach the stored copies; ``remap_stored`` maps them again, one page
per transaction, through the same ``resources.ingest_one`` as the ingest.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapter.fhir.validation import Mode
from adapter.mapping import engine
from adapter.store import models, state
from adapter.sync import outdated_issues
from adapter.sync.resources import NOT_KEPT, TOO_LARGE, has_body, ingest_one, off_roster
from adapter.sync.runs import StopCheck, SyncStopped, SyncSummary

REMAP_PAGE = 500

# Told after each committed page: resources re-mapped so far, resources to re-map.
RemapProgress = Callable[[int, int], None]


def remap_stored(
    sessions: sessionmaker[Session],
    ctx: engine.SiteContext,
    summary: SyncSummary,
    relinked: set[str],
    *,
    everything: bool,
    validation: Mode,
    should_stop: StopCheck,
    progress: RemapProgress | None = None,
) -> None:
    """Map stored resources again when the catalog or a patient link changed.

    An incremental source will not send an unchanged resource again, so a
    mapping fix must reach the stored copy; one page per transaction.
    A resource stored without its body (``resources._kept_raw``: its patient
    is not on the roster) cannot be mapped again and need not be: while its
    patient stays off the roster no catalog changes its outcome (the patient
    is checked before anything the catalog decides), so it only takes the
    new catalog version.  When its patient joins, ``patients._requeue_unkept``
    has the source send it again.  Resources whose open issue an earlier
    version raised and this one does not are mapped again too
    (``outdated_issues``).
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
        stale_keys = set(keys)
        keys += [key for key in outdated_issues.outdated(session, ctx.site) if key not in stale_keys]
    if progress is not None:
        progress(0, len(keys))
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
                if not has_body(raw):
                    if off_roster(row.patient_ref, ctx):
                        row.catalog_version = ctx.catalog.version
                    continue
                ingest_one(
                    session,
                    ctx,
                    resource_type,
                    raw,
                    summary,
                    validation=validation,
                    full=True,
                    row=row,
                    dirty=dirty,
                    seen_run=row.last_seen_run,
                    page=new_rows,
                )
            new_rows.write(session)
            state.mark_dirty(session, ctx.site, dirty)
        if progress is not None:
            progress(min(start + REMAP_PAGE, len(keys)), len(keys))
