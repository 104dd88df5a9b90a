"""Retiring what the source says was deleted, between sweeps: a page's ``deleted`` refs.

A complete listing tells deletions by silence (``ingest.retire_vanished``);
an incremental pass can be told them outright, by a type's ``_history``
(``adapter.fhir.history``) or a Bulk export's ``deleted`` files.  Either way
a retired resource loses its facts and issues, its outcome becomes
``deleted``, and the subjects it fed are marked dirty, so the same pass
re-derives them and retracts what it supported: a deletion at the EHR
reaches the trial repository within one sync interval, not one day.

The retraction guard applies here too (``adapter.sync.retraction_guard``):
a history or an export that suddenly calls all, or an unusual share, of a
type deleted is more likely broken than true.  Then none of that type is
retired, the ``retraction_held`` issue is raised (or kept) and the pass's
summary holds the count.  The deletions are not kept anywhere: the next
complete listing (the full sweep) finds the same resources gone and goes
through the guard's approval path (``accept-retraction``), or lists them
again and the issue resolves.  Approvals are used up only by complete
listings, so a person's yes is never spent on a pass that cannot check it.

Only stored resources of the type being ingested that are not already
``deleted`` count: unknown references (never stored, another type, other
patients' resources in a type's history) are ignored, and retiring a
resource twice (a crash before the commit, an overlapping history window)
changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.store import models, state
from adapter.sync import retraction_guard
from adapter.sync.runs import SyncSummary

log = logging.getLogger(__package__)  # "adapter.sync": one logger name for the whole pass


def retire_deleted(
    session: Session,
    site_id: str,
    resource_type: str,
    refs: Iterable[str],
    summary: SyncSummary,
    max_share: float,
) -> int:
    """Retire the stored resources of ``resource_type`` among ``refs``; return how many were retired."""
    ids = {ref.partition("/")[2] for ref in refs if ref.partition("/")[0] == resource_type} - {""}
    rows = state.stored_sources(session, site_id, resource_type, ids, include_deleted=False)
    if not rows:
        return 0
    counts = retraction_guard.Vanished(resource_type, _stored(session, site_id, resource_type), len(rows))
    if retraction_guard.is_suspicious(counts, max_share):
        retraction_guard.hold(session, site_id, counts, reported_deleted=True)
        summary.held[resource_type] = max(summary.held.get(resource_type, 0), counts.vanished)
        log.warning(
            "retraction held back: the source reports an unusual share of a type deleted",
            extra={
                "site": site_id,
                "resource_type": resource_type,
                "deleted": counts.vanished,
                "stored": counts.stored,
            },
        )
        return 0
    for row in rows:
        retire(session, site_id, row, summary)
    log.info(
        "resources deleted at the source retired",
        extra={"site": site_id, "resource_type": resource_type, "count": len(rows)},
    )
    return len(rows)


def retire(session: Session, site_id: str, row: models.SourceResource, summary: SyncSummary) -> None:
    """One stored resource is gone at the site: its facts and issues go, its subjects re-derive."""
    ref = f"{row.resource_type}/{row.resource_id}"
    state.replace_facts(session, site_id, ref, [])  # marks the subjects it fed dirty
    state.replace_issues(session, site_id, ref, [])
    row.outcome = "deleted"
    summary.vanished += 1


def _stored(session: Session, site_id: str, resource_type: str) -> int:
    """Stored resources of the type that are not deleted: what the guard weighs the deletions against."""
    row = models.SourceResource
    query = sa.select(sa.func.count()).where(
        row.site == site_id, row.resource_type == resource_type, row.outcome != "deleted"
    )
    return int(session.scalar(query) or 0)
