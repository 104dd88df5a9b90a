"""Draining the outbox into the trial repository.

Items go out in outbox order, which keeps each subject's changes in the order
they were made.  An item is marked delivered only after the sink confirms it;
a crash in between means it is sent again, which idempotent sinks absorb.  A
failed item waits with exponential backoff, and after ``max_attempts`` it also
becomes a ``delivery_failed`` issue for a person to look at; it is never
dropped.  Once a subject has an item waiting, its later items wait too, so a
retraction can never overtake the upsert before it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapter.mapping.issues import IssueKind, MappingIssue
from adapter.sinks.base import Delivery, Sink
from adapter.store import models, state
from adapter.store.models import utcnow

BASE_BACKOFF = dt.timedelta(seconds=30)
MAX_BACKOFF = dt.timedelta(hours=1)


@dataclass
class DrainSummary:
    delivered: int = 0
    failed: int = 0
    waiting: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


def backoff(attempts: int) -> dt.timedelta:
    """Exponential backoff: 30 s, 60 s, 120 s, ... capped at one hour."""
    return min(BASE_BACKOFF * (2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def drain(
    sessions: sessionmaker[Session],
    sink: Sink,
    *,
    batch_size: int = 500,
    max_attempts: int = 5,
    now: Callable[[], dt.datetime] = utcnow,
) -> DrainSummary:
    """Deliver every due outbox item; return what happened."""
    summary = DrainSummary()
    blocked: set[tuple[str, str]] = set()
    last_id = 0
    while True:
        with sessions.begin() as session:
            items = list(
                session.scalars(
                    sa.select(models.OutboxItem)
                    .where(models.OutboxItem.delivered_at.is_(None), models.OutboxItem.id > last_id)
                    .order_by(models.OutboxItem.id)
                    .limit(batch_size)
                )
            )
            if not items:
                return summary
            last_id = items[-1].id
            due = []
            for item in items:
                key = (item.site, item.subject_id)
                not_yet = item.next_attempt_at is not None and _aware(item.next_attempt_at) > now()
                if key in blocked or not_yet:
                    blocked.add(key)
                    summary.waiting += 1
                    continue
                due.append(item)
            if not due:
                continue
            batch = [
                Delivery(
                    item_id=item.id,
                    record_id=item.record_id,
                    record_type=item.record_type,
                    subject_id=item.subject_id,
                    operation="upsert" if item.operation == "upsert" else "retract",
                    payload=orjson.loads(item.payload),
                )
                for item in due
            ]
            results = {result.item_id: result for result in sink.deliver(batch)}
            for item in due:
                result = results.get(item.id)
                key = (item.site, item.subject_id)
                if result is not None and result.ok and key not in blocked:
                    if item.last_error is not None:
                        _resolve_failure(session, item)
                    item.delivered_at = now()
                    item.attempts += 1
                    summary.delivered += 1
                    summary.by_type[item.record_type] = summary.by_type.get(item.record_type, 0) + 1
                    continue
                # A later item of a subject whose earlier item failed is re-sent
                # after it, even if the sink took it now: order wins.
                blocked.add(key)
                if result is None or result.ok:
                    summary.waiting += 1
                    continue
                _record_failure(session, item, result.error or "unknown error", max_attempts, now())
                summary.failed += 1


def _record_failure(
    session: Session, item: models.OutboxItem, error: str, max_attempts: int, at: dt.datetime
) -> None:
    item.attempts += 1
    item.last_error = error[:2000]
    item.next_attempt_at = at + backoff(item.attempts)
    if item.attempts >= max_attempts:
        issue = MappingIssue(
            site=item.site,
            kind=IssueKind.DELIVERY_FAILED,
            scope=f"outbox:{item.id}",
            subject_id=item.subject_id,
            detail=(
                f"{item.operation} of {item.record_type} {item.record_id} failed {item.attempts} times; "
                f"last error: {error[:300]}. It stays queued and is retried."
            ),
        )
        state.replace_issues(session, item.site, f"outbox:{item.id}", [issue])


def _resolve_failure(session: Session, item: models.OutboxItem) -> None:
    """The item finally arrived: its delivery_failed issue is resolved."""
    state.replace_issues(session, item.site, f"outbox:{item.id}", [])
    key = f"{item.site}|{IssueKind.DELIVERY_FAILED.value}|outbox:{item.id}"
    row = session.get(models.IssueRow, key)
    if row is not None and row.status == "open":
        row.status, row.resolved_at = "resolved", utcnow()


def _aware(moment: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes for timezone-aware columns: they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
