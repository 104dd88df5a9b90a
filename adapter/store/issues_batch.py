"""The issues one page of resources raises, written with a few statements per page.

Recording a resource's issues one at a time (look the issue up, create or
update it, merge its source) cost a resource that raised one about ten times
a clean resource (issue 18).  A page's sources and facts already go in with
one bulk INSERT per table (``state.PageRows``); this does the same for
issues, with the lifecycle of ``state.replace_issues`` unchanged:

- a source's issues are exactly those it raised last: the issue sources of
  the page's re-mapped resources are deleted in bulk, then the page's are
  inserted;
- an issue is inserted when new (``first_seen``), else updated in place by
  its key (``INSERT ... ON CONFLICT DO UPDATE``, on SQLite and PostgreSQL
  alike): its details and ``last_seen`` follow the latest raise, a resolved
  issue reopens, an open or ignored one keeps its status;
- resolving the issues no source raises any more stays the pass's job
  (``state.resolve_orphaned_issues``).

Everything is written in the page's transaction, so a crash keeps all of a
page's issues or none of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from adapter.mapping.issues import MappingIssue
from adapter.store import models, value_lists
from adapter.store.models import utcnow


class PageIssues:
    """The issues each source of one page raises now, and the sources raised by before."""

    def __init__(self) -> None:
        self._raised: dict[tuple[str, str], set[str]] = {}  # (site, source) -> keys it raises now
        self._stale: set[tuple[str, str]] = set()  # (site, source) whose stored issue sources go
        # key -> its last raise.  Every raise counts, as it would one source at a
        # time: an issue raised by a copy of a resource that a later copy in the
        # page replaced is still recorded (and resolves, having no source).
        self._latest: dict[str, MappingIssue] = {}

    def replace(self, site: str, source: str, issues: Iterable[MappingIssue], *, known: bool) -> None:
        """Record that ``source`` now raises exactly ``issues``; the last call for a source wins.

        ``known=False``: the source is new, so it raised nothing before (no delete needed).
        """
        if known:
            self._stale.add((site, source))
        keys = self._raised[(site, source)] = set()
        for issue in issues:
            keys.add(issue.key)
            self._latest[issue.key] = issue

    def write(self, session: Session) -> None:
        """Write the page's issues in the caller's transaction, then forget them."""
        session.flush()  # an issue written through the ORM earlier in the transaction goes first
        connection = session.connection()
        for site, sources in itertools.groupby(sorted(self._stale), key=lambda pair: pair[0]):
            names = [source for _site, source in sources]
            for among in value_lists.among_values(session, models.IssueSource.source, names):
                connection.execute(
                    sa.delete(models.IssueSource).where(models.IssueSource.site == site, among)
                )
        if self._latest:
            now = utcnow()
            rows = [_issue_row(issue, now) for issue in self._latest.values()]
            connection.execute(_upsert_issues(session), rows)
            _expire_loaded(session, self._latest)
        links = [
            {"issue_key": key, "site": site, "source": source}
            for (site, source), keys in self._raised.items()
            for key in sorted(keys)
        ]
        if links:
            connection.execute(_insert(session, models.IssueSource).on_conflict_do_nothing(), links)
        self._raised, self._stale, self._latest = {}, set(), {}


def _expire_loaded(session: Session, keys: Iterable[str]) -> None:
    """Issues the session holds as ORM objects read the upsert's outcome on their next use.

    The upsert bypasses the ORM, so an ``IssueRow`` loaded earlier in the
    transaction (the outbox reads a delivery's issue after writing it) would
    otherwise keep its old status and details.
    """
    for key in keys:
        row = session.identity_map.get(identity_key(models.IssueRow, key))
        if row is not None:
            session.expire(row)


def _issue_row(issue: MappingIssue, now: Any) -> dict[str, Any]:
    return {
        "key": issue.key,
        "site": issue.site,
        "kind": issue.kind.value,
        "scope": issue.scope,
        "subject_id": issue.subject_id,
        "concept": issue.concept,
        "code": issue.code,
        "unit": issue.unit,
        "value": issue.value,
        "detail": issue.detail,
        "status": "open",
        "reason": None,
        "first_seen": now,
        "last_seen": now,
        "resolved_at": None,
    }


def _upsert_issues(session: Session) -> Any:
    """INSERT an issue, or update the stored one by key: details and last_seen, reopening if resolved."""
    table = models.IssueRow.__table__
    statement = _insert(session, models.IssueRow)
    excluded = statement.excluded
    was_resolved = table.c.status == "resolved"
    return statement.on_conflict_do_update(
        index_elements=[table.c.key],
        set_={
            "subject_id": excluded.subject_id,
            "concept": excluded.concept,
            "code": excluded.code,
            "unit": excluded.unit,
            "value": excluded.value,
            "detail": excluded.detail,
            "last_seen": excluded.last_seen,
            # Both expressions read the stored row as it was: SET sees the old values.
            "status": sa.case((was_resolved, "open"), else_=table.c.status),
            "resolved_at": sa.case((was_resolved, None), else_=table.c.resolved_at),
        },
    )


def _insert(session: Session, model: type[models.Base]) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (SQLite and PostgreSQL are the supported stores)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(model)
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(model)
    raise ValueError(f"unsupported state database: {dialect}")  # pragma: no cover
