"""The outbox backlog as people see it: how much is owed, what keeps failing, since when.

Read-only: ``trial-adapter outbox`` shows it, and nothing here changes an
item (draining is ``adapter.delivery.outbox``).  Errors are shown with
credentials blanked (``adapter.net.credentials.redacted``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.net import credentials
from adapter.store import counts, models


@dataclass(frozen=True)
class FailingItem:
    item_id: int
    site: str
    subject_id: str
    record_type: str
    record_id: str
    operation: str
    attempts: int
    next_attempt_at: dt.datetime | None
    last_error: str


@dataclass(frozen=True)
class OutboxReport:
    """What ``trial-adapter outbox`` shows: how much is owed, what keeps failing, since when."""

    pending: int
    failing: int
    delivered: int
    oldest_pending_at: dt.datetime | None
    last_delivered_at: dt.datetime | None
    pending_by_type: dict[str, dict[str, int]]
    failures: list[FailingItem]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("oldest_pending_at", "last_delivered_at"):
            data[key] = _iso(data[key])
        for failure in data["failures"]:
            failure["next_attempt_at"] = _iso(failure["next_attempt_at"])
        return data


def outbox_report(session: Session, *, failures: int = 20) -> OutboxReport:
    item = models.OutboxItem
    pending = item.delivered_at.is_(None)
    by_type: dict[str, dict[str, int]] = {}
    for record_type, operation, count in session.execute(
        sa.select(item.record_type, item.operation, sa.func.count())
        .where(pending)
        .group_by(item.record_type, item.operation)
    ):
        by_type.setdefault(record_type, {})[operation] = int(count)
    failing_rows = session.scalars(
        sa.select(item).where(pending, item.last_error.is_not(None)).order_by(item.id).limit(failures)
    )
    backlog = counts.outbox_backlog(session)
    last = session.scalar(sa.select(sa.func.max(item.delivered_at)))
    return OutboxReport(
        pending=backlog.pending,
        failing=backlog.failing,
        delivered=backlog.delivered,
        oldest_pending_at=backlog.oldest,
        last_delivered_at=last if last else None,
        pending_by_type=by_type,
        failures=[
            FailingItem(
                item_id=row.id,
                site=row.site,
                subject_id=row.subject_id,
                record_type=row.record_type,
                record_id=row.record_id,
                operation=row.operation,
                attempts=row.attempts,
                next_attempt_at=row.next_attempt_at if row.next_attempt_at else None,
                last_error=credentials.redacted(row.last_error or ""),
            )
            for row in failing_rows
        ],
    )


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment is not None else None
