"""Is a site's feed healthy?  The numbers behind the site page.

Sync health is read from what the pipeline already records: ``SyncRun``
(each pass with its outcome and counts), ``SyncCursor`` (the incremental
watermarks) and the outbox (what still waits for the trial repository, and
what keeps failing).  Mapping coverage comes from ``adapter.reconciliation.coverage``, the
same numbers as ``trial-adapter coverage``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.reconciliation import coverage as coverage_mod
from adapter.store import models


@dataclass
class Backlog:
    pending: int = 0
    failing: int = 0
    oldest: dt.datetime | None = None
    delivered: int = 0
    last_error: str | None = None


@dataclass
class SiteHealth:
    site: str
    coverage: coverage_mod.Coverage
    runs: list[models.SyncRun] = field(default_factory=list)
    cursors: list[models.SyncCursor] = field(default_factory=list)
    backlog: Backlog = field(default_factory=Backlog)
    open_by_kind: Counter[str] = field(default_factory=Counter)
    issue_spans: list[tuple[dt.datetime, dt.datetime | None]] = field(default_factory=list)

    @property
    def last_run(self) -> models.SyncRun | None:
        return self.runs[0] if self.runs else None

    @property
    def last_ok(self) -> models.SyncRun | None:
        return next((run for run in self.runs if run.outcome == "ok"), None)

    @property
    def share_mapped(self) -> float:
        total = sum(t.total - t.ignored for t in self.coverage.by_type.values())
        mapped = sum(t.mapped for t in self.coverage.by_type.values())
        return mapped / total if total else 1.0


def site_health(session: Session, site: str, *, runs: int = 10) -> SiteHealth:
    health = SiteHealth(site=site, coverage=coverage_mod.site_coverage(session, site, top=15))
    health.runs = list(
        session.scalars(
            sa.select(models.SyncRun)
            .where(models.SyncRun.site == site)
            .order_by(models.SyncRun.id.desc())
            .limit(runs)
        )
    )
    health.cursors = list(
        session.scalars(
            sa.select(models.SyncCursor)
            .where(models.SyncCursor.site == site)
            .order_by(models.SyncCursor.resource_type)
        )
    )
    health.backlog = _backlog(session, site)
    health.open_by_kind = Counter(
        dict(
            session.execute(
                sa.select(models.IssueRow.kind, sa.func.count())
                .where(models.IssueRow.site == site, models.IssueRow.status == "open")
                .group_by(models.IssueRow.kind)
            ).all()
        )
    )
    health.issue_spans = [
        (first, closed)
        for first, closed in session.execute(
            sa.select(models.IssueRow.first_seen, models.IssueRow.resolved_at).where(
                models.IssueRow.site == site
            )
        )
    ]
    return health


def _backlog(session: Session, site: str) -> Backlog:
    pending = models.OutboxItem.delivered_at.is_(None)
    row = session.execute(
        sa.select(
            sa.func.count().filter(pending),
            sa.func.count().filter(pending, models.OutboxItem.attempts > 0),
            sa.func.min(models.OutboxItem.created_at).filter(pending),
            sa.func.count().filter(models.OutboxItem.delivered_at.is_not(None)),
        ).where(models.OutboxItem.site == site)
    ).one()
    last_error = session.scalar(
        sa.select(models.OutboxItem.last_error)
        .where(models.OutboxItem.site == site, pending, models.OutboxItem.last_error.is_not(None))
        .order_by(models.OutboxItem.id.desc())
        .limit(1)
    )
    return Backlog(
        pending=int(row[0]), failing=int(row[1]), oldest=row[2], delivered=int(row[3]), last_error=last_error
    )
