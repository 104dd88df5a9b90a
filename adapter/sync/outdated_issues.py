"""Stored resources still raising an issue that this version of the mapping no longer raises.

Re-mapping follows the catalog version: a resource mapped with the current
catalog is not mapped again until the site sends a new version of it.  Up to
issue 17 a dose not given, a procedure not done and an entry the site marked
entered-in-error each raised ``not_final``; they raise nothing now
(``adapter.mapping.not_counted``).  An upgrade leaves the catalog as it was,
so without this those resources would keep their issue open for ever.
``outdated`` finds them (a handful per site: one per such entry) so that the
pass re-maps them once; mapped again they raise nothing, and the issue
resolves like any issue that no source raises any more.
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.mapping.issues import IssueKind
from adapter.mapping.not_counted import ENTERED_IN_ERROR, NOT_DONE
from adapter.store import models, value_lists

# Statuses that raised ``not_final`` before and raise no issue now.
NO_LONGER_NOT_FINAL = frozenset({NOT_DONE, ENTERED_IN_ERROR})


def outdated(session: Session, site: str) -> list[tuple[str, str]]:
    """(resource type, id) of each stored resource still raising an outdated ``not_final`` issue."""
    sources = session.scalars(
        sa.select(models.IssueSource.source)
        .join(models.IssueRow, models.IssueRow.key == models.IssueSource.issue_key)
        .where(
            models.IssueSource.site == site,
            models.IssueRow.kind == IssueKind.NOT_FINAL.value,
            models.IssueRow.status != "resolved",  # open, or ignored by a person: still raised
        )
    )
    ids_by_type: dict[str, set[str]] = {}
    for source in sources:
        resource_type, _slash, resource_id = source.partition("/")
        ids_by_type.setdefault(resource_type, set()).add(resource_id)
    stored = models.SourceResource
    found = []
    for resource_type, ids in sorted(ids_by_type.items()):
        for among in value_lists.among_values(session, stored.resource_id, sorted(ids)):
            rows = session.execute(  # by primary key, never a scan of the table
                sa.select(stored.resource_id, stored.raw).where(
                    stored.site == site, stored.resource_type == resource_type, among
                )
            )
            found += [(resource_type, rid) for rid, raw in rows if _status(raw) in NO_LONGER_NOT_FINAL]
    return sorted(found)


def _status(raw: str) -> object:
    try:
        stored = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return stored.get("status") if isinstance(stored, dict) else None
