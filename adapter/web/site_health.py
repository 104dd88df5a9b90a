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
from dataclasses import dataclass, field, replace

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.net import credentials
from adapter.reconciliation import coverage as coverage_mod
from adapter.store import counts, models
from adapter.store import runs as runs_mod


@dataclass
class SiteHealth:
    site: str
    coverage: coverage_mod.Coverage
    runs: list[models.SyncRun] = field(default_factory=list)
    cursors: list[models.SyncCursor] = field(default_factory=list)
    backlog: counts.Backlog = field(default_factory=counts.Backlog)
    open_by_kind: Counter[str] = field(default_factory=Counter)
    issue_spans: list[tuple[dt.datetime, dt.datetime | None]] = field(default_factory=list)
    outcomes: dict[int, str] = field(default_factory=dict)  # run id -> outcome as shown (adapter.store.runs)

    def outcome(self, run: models.SyncRun) -> str:
        return self.outcomes.get(run.id, run.outcome)

    @property
    def last_run(self) -> models.SyncRun | None:
        return self.runs[0] if self.runs else None

    @property
    def last_ok(self) -> models.SyncRun | None:
        return next((run for run in self.runs if run.outcome == "ok"), None)

    @property
    def share_mapped(self) -> float:
        total = sum(t.considered for t in self.coverage.by_type.values())
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
    health.outcomes = {run.id: runs_mod.shown_outcome(session, run) for run in health.runs}
    health.cursors = list(
        session.scalars(
            sa.select(models.SyncCursor)
            .where(models.SyncCursor.site == site)
            .order_by(models.SyncCursor.resource_type)
        )
    )
    backlog = counts.outbox_backlog(session, site)
    health.backlog = replace(backlog, last_error=credentials.redacted(backlog.last_error or "") or None)
    health.open_by_kind = Counter(counts.open_issue_counts(session, site))
    health.issue_spans = [
        (first, closed)
        for first, closed in session.execute(
            sa.select(models.IssueRow.first_seen, models.IssueRow.resolved_at).where(
                models.IssueRow.site == site
            )
        )
    ]
    return health
