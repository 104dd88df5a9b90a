"""The tallies the report, the health check and the metrics show.

Read-only summaries of the state (open issues by kind, current records by
type and the subjects they cover, the outbox backlog), kept apart from the
writes so a caller that only counts needs nothing else from the store.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.store import models


def open_issue_counts(session: Session, site: str | None = None) -> dict[str, int]:
    query = sa.select(models.IssueRow.kind, sa.func.count()).where(models.IssueRow.status == "open")
    if site is not None:
        query = query.where(models.IssueRow.site == site)
    return {kind: count for kind, count in session.execute(query.group_by(models.IssueRow.kind))}


def record_counts(session: Session, site: str | None = None) -> dict[str, int]:
    query = sa.select(models.RecordRow.record_type, sa.func.count()).where(
        models.RecordRow.retracted.is_(False)
    )
    if site is not None:
        query = query.where(models.RecordRow.site == site)
    return {kind: count for kind, count in session.execute(query.group_by(models.RecordRow.record_type))}


def current_subjects(session: Session) -> int:
    """How many subjects have at least one current (not retracted) record."""
    query = sa.select(sa.func.count(sa.distinct(models.RecordRow.subject_id))).where(
        models.RecordRow.retracted.is_(False)
    )
    return int(session.execute(query).scalar_one())


@dataclass(frozen=True)
class Backlog:
    """What the outbox still owes the trial repository.

    ``failing`` counts the waiting items whose last attempt failed, and
    ``last_error`` is the newest of their errors as stored: a caller that
    shows it to a person blanks credentials first (``adapter.net.credentials``).
    """

    pending: int = 0
    failing: int = 0
    oldest: dt.datetime | None = None
    delivered: int = 0
    last_error: str | None = None


def outbox_backlog(session: Session, site: str | None = None) -> Backlog:
    """The outbox backlog of one site, or of all sites when ``site`` is None.

    The one definition ``status``, the report, the metrics, the console and
    ``trial-adapter outbox`` all show, so their numbers agree.
    """
    item = models.OutboxItem
    pending = item.delivered_at.is_(None)
    failed = sa.and_(pending, item.last_error.is_not(None))
    query = sa.select(
        sa.func.count().filter(pending),
        sa.func.count().filter(failed),
        sa.func.min(item.created_at).filter(pending),
        sa.func.count().filter(item.delivered_at.is_not(None)),
    )
    last_error_query = sa.select(item.last_error).where(failed).order_by(item.id.desc()).limit(1)
    if site is not None:
        query = query.where(item.site == site)
        last_error_query = last_error_query.where(item.site == site)
    row = session.execute(query).one()
    return Backlog(
        pending=int(row[0]),
        failing=int(row[1]),
        oldest=row[2],
        delivered=int(row[3]),
        last_error=session.scalar(last_error_query),
    )
