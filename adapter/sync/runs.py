"""The record of one pass: what it did (``SyncSummary``) and its ``sync_runs`` row.

Every pass, a sync or a re-map, opens a run row when it starts and closes it
with its outcome and counts when it ends, however it ends; the same counts
go to the log, the CLI summary and the metrics.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from adapter.store import models, state
from adapter.store.models import utcnow

log = logging.getLogger(__package__)  # "adapter.sync": one logger name for the whole pass

Progress = Callable[[int], None]
StopCheck = Callable[[], bool]


class SyncStopped(Exception):
    """Raised between pages when the service asked the pass to stop."""


@dataclass
class SyncSummary:
    """What one pass did, for the CLI summary, the run log and metrics."""

    site: str
    run_id: int = 0
    resources_read: int = 0
    resources_mapped: int = 0
    unchanged: int = 0
    invalid: int = 0
    vanished: int = 0
    facts_written: int = 0
    subjects_derived: int = 0
    upserts: int = 0
    retractions: int = 0
    issues_resolved: int = 0
    # HTTP requests the pass sent to the site's server (every try; 0 for a folder source):
    # what a pass costs the EHR, which the patient batch size and max_url_bytes drive.
    ehr_requests: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    # Resource type -> resources the source stopped listing whose retraction
    # the guard held back (adapter.sync.retraction_guard); empty on a normal pass.
    held: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def counts(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in ("site", "outcomes", "held")}
        data["outcomes"] = dict(self.outcomes)
        if self.held:
            data["held"] = dict(self.held)
        return data


def open_run(session: Session, site_id: str) -> int:
    """A new ``sync_runs`` row for the site, in the caller's transaction; its id."""
    run = models.SyncRun(site=site_id)
    session.add(run)
    session.flush()
    return run.id


def finish_run(sessions: sessionmaker[Session], summary: SyncSummary, outcome: str, started: float) -> None:
    """Close the pass's run row with its outcome and counts, and log them.

    An ``ok`` pass also resolves the issues whose source is gone.
    """
    summary.seconds = round(time.monotonic() - started, 3)
    with sessions.begin() as session:
        if outcome == "ok":
            summary.issues_resolved = state.resolve_orphaned_issues(session, summary.site)
        run_row = session.get(models.SyncRun, summary.run_id)
        if run_row is not None:
            run_row.finished_at = utcnow()
            run_row.outcome = outcome
            run_row.counts = summary.counts()
    log.info(
        "sync finished",
        extra={
            "site": summary.site,
            "run_id": summary.run_id,
            "outcome": outcome,
            "counts": summary.counts(),
        },
    )
