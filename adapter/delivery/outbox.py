"""Draining the outbox into the trial repository.

Items go out in outbox order, which keeps each subject's changes in the order
they were made.  An item is marked delivered only after the sink confirms it;
a crash in between means it is sent again, which idempotent sinks absorb.  A
failed item waits with exponential backoff, and after ``max_attempts`` it also
becomes a ``delivery_failed`` issue for a person to look at; it is never
dropped.  Once a subject has an item waiting, its later items wait too, so a
retraction can never overtake the upsert before it.

When the sink reports an outage (the repository as a whole is unreachable,
see ``adapter.sinks.base``) the pass ends after that batch: the rest of the
backlog waits for the next pass instead of timing out item by item.

When the service is stopping (SIGTERM), ``should_stop`` ends the pass the
same way between batches, and a sink that sends one request per item (the
``http`` sink) also checks it between requests: what arrived is acknowledged
with its batch, the rest stays queued, untried, for the next pass.

Every acknowledged item records which repository took it (``repository``,
a fingerprint from ``adapter.sinks.identity``), so a site that switches
repositories can re-send what the new one lacks (``adapter.delivery.redelivery``).
Items are owed to the trial repository, not to one repository: an item
queued while the config named another repository goes to the one configured
when it is delivered.

A pass ends by saying whether items wait because their last attempt failed
(``DrainSummary.retrying``), with the error and when the next attempt is
due, so ``push`` and ``sync --once`` can fail loudly (exit 7) instead of
reporting "0 delivered" as success.  Error messages are stored and shown
with credentials blanked (``adapter.net.credentials.redacted``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapter.mapping.issues import IssueKind, MappingIssue
from adapter.net import credentials
from adapter.sinks.base import Delivery, Sink
from adapter.store import models, state, value_lists
from adapter.store.models import utcnow

BASE_BACKOFF = dt.timedelta(seconds=30)
MAX_BACKOFF = dt.timedelta(hours=1)


@dataclass
class DrainSummary:
    delivered: int = 0
    failed: int = 0
    waiting: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None  # why the pass ended early (an outage), else None
    interrupted: bool = False  # the pass ended early because ``should_stop`` asked it to
    # After the pass: items still waiting whose last attempt failed (in this pass or an earlier
    # one), the first error of this pass (else the last error of the item due first), and when
    # the first of them is due again.
    retrying: int = 0
    error: str | None = None
    next_retry_at: dt.datetime | None = None


def backoff(attempts: int) -> dt.timedelta:
    """Exponential backoff: 30 s, 60 s, 120 s, ... capped at one hour."""
    return min(BASE_BACKOFF * (2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def drain(
    sessions: sessionmaker[Session],
    sink: Sink,
    *,
    batch_size: int | None = None,
    max_attempts: int = 5,
    now: Callable[[], dt.datetime] = utcnow,
    should_stop: Callable[[], bool] | None = None,
    repository: str | None = None,
    retry_now: bool = False,
) -> DrainSummary:
    """Deliver every due outbox item; return what happened.

    ``batch_size`` defaults to what the sink asks for (``Sink.batch_size``).
    ``should_stop`` is polled before each batch (the service's stop flag):
    once it says stop, the pass ends with ``interrupted`` set and every item
    not yet sent still pending, so the next pass sends each of them once.
    ``repository`` is the fingerprint of the repository ``sink`` writes to,
    recorded on every item it acknowledges.  ``retry_now`` tries items whose
    backoff has not passed yet (``push --retry-now``, after fixing the cause).
    """
    summary = _drain(
        sessions,
        sink,
        batch_size=batch_size,
        max_attempts=max_attempts,
        now=now,
        should_stop=should_stop,
        repository=repository,
        retry_now=retry_now,
    )
    with sessions() as session:
        _note_retries(session, summary)
    return summary


def _drain(
    sessions: sessionmaker[Session],
    sink: Sink,
    *,
    batch_size: int | None,
    max_attempts: int,
    now: Callable[[], dt.datetime],
    should_stop: Callable[[], bool] | None,
    repository: str | None,
    retry_now: bool,
) -> DrainSummary:
    size = batch_size if batch_size is not None else sink.batch_size
    stop = should_stop or (lambda: False)
    summary = DrainSummary()
    blocked: set[tuple[str, str]] = set()
    last_id = 0
    while True:
        with sessions.begin() as session:
            if stop():
                summary.interrupted = True
                summary.waiting += _count_pending_after(session, last_id)
                return summary
            items = _pending_after(session, last_id, size)
            if not items:
                return summary
            last_id = items[-1].id
            due = _due(items, blocked, now(), summary, retry_now=retry_now)
            if not due:
                continue
            results = {result.item_id: result for result in sink.deliver(deliveries(session, due))}
            arrived: list[int] = []
            for item in due:
                result = results.get(item.id)
                key = (item.site, item.subject_id)
                if result is not None and result.ok and key not in blocked:
                    if item.last_error is not None:
                        _resolve_failure(session, item)
                    arrived.append(item.id)
                    summary.delivered += 1
                    summary.by_type[item.record_type] = summary.by_type.get(item.record_type, 0) + 1
                    continue
                # A later item of a subject whose earlier item failed is re-sent
                # after it, even if the sink took it now: order wins.  An item
                # without a result was not tried; it waits without an attempt.
                blocked.add(key)
                if result is None or result.ok:
                    summary.waiting += 1
                    continue
                error = credentials.redacted(result.error or "unknown error")
                _record_failure(session, item, error, max_attempts, now())
                summary.failed += 1
                if summary.error is None:
                    summary.error = error
                if result.outage and summary.stopped is None:
                    summary.stopped = error
            _acknowledge(session, arrived, now(), repository)
            if summary.stopped is not None:
                summary.waiting += _count_pending_after(session, last_id)
                return summary


def _acknowledge(session: Session, item_ids: Sequence[int], at: dt.datetime, repository: str | None) -> None:
    """Mark items delivered in one statement per chunk (a per-row ORM flush dominated large batches)."""
    session.flush()
    for among in value_lists.among_values(session, models.OutboxItem.id, item_ids):
        session.execute(
            sa.update(models.OutboxItem)
            .where(among)
            .values(delivered_at=at, attempts=models.OutboxItem.attempts + 1, delivered_to=repository)
            .execution_options(synchronize_session=False)
        )


def _note_retries(session: Session, summary: DrainSummary) -> None:
    """Fill in which items still wait because their last attempt failed, and when they are due."""
    item = models.OutboxItem
    failing = sa.and_(item.delivered_at.is_(None), item.last_error.is_not(None))
    count, first_due = session.execute(
        sa.select(sa.func.count(), sa.func.min(item.next_attempt_at)).where(failing)
    ).one()
    summary.retrying = int(count or 0)
    summary.next_retry_at = first_due if first_due is not None else None
    if summary.retrying and summary.error is None:
        last = session.scalar(
            sa.select(item.last_error).where(failing).order_by(item.next_attempt_at, item.id).limit(1)
        )
        summary.error = credentials.redacted(last) if last else None


def due_deliveries(
    sessions: sessionmaker[Session], *, limit: int = 50, now: Callable[[], dt.datetime] = utcnow
) -> list[Delivery]:
    """The next items a drain would send, in order, as the sink would get them (for ``push --dry-run``)."""
    found: list[Delivery] = []
    blocked: set[tuple[str, str]] = set()
    last_id = 0
    with sessions() as session:
        while len(found) < limit:
            items = _pending_after(session, last_id, 500)
            if not items:
                break
            last_id = items[-1].id
            due = _due(items, blocked, now(), DrainSummary())
            found += deliveries(session, due[: limit - len(found)])
    return found


def deliveries(session: Session, items: Sequence[models.OutboxItem]) -> list[Delivery]:
    """Outbox rows as the sink sees them; a retraction carries the record it withdraws."""
    previous = _withdrawn_records(session, [item for item in items if item.operation == "retract"])
    return [
        Delivery(
            item_id=item.id,
            record_id=item.record_id,
            record_type=item.record_type,
            subject_id=item.subject_id,
            operation="upsert" if item.operation == "upsert" else "retract",
            payload=orjson.loads(item.payload),
            previous=previous.get(item.id),
            enqueued_at=item.created_at if item.created_at is not None else None,
        )
        for item in items
    ]


def _withdrawn_records(
    session: Session, retractions: Sequence[models.OutboxItem]
) -> dict[int, dict[str, Any]]:
    """For each retraction, the payload of the last upsert of its record enqueued before it.

    One query per batch: the outbox has no index on record id, and
    retractions are few, so a single scan beats one lookup per item.
    """
    if not retractions:
        return {}
    wanted = sorted({item.record_id for item in retractions})
    upserts: dict[str, list[tuple[int, str]]] = {}
    for among in value_lists.among_values(session, models.OutboxItem.record_id, wanted):
        rows = session.execute(
            sa.select(models.OutboxItem.id, models.OutboxItem.record_id, models.OutboxItem.payload)
            .where(models.OutboxItem.operation == "upsert", among)
            .order_by(models.OutboxItem.id)
        )
        for item_id, record_id, payload in rows:
            upserts.setdefault(record_id, []).append((item_id, payload))
    found: dict[int, dict[str, Any]] = {}
    for item in retractions:
        before = [payload for item_id, payload in upserts.get(item.record_id, []) if item_id < item.id]
        if before:
            found[item.id] = orjson.loads(before[-1])
    return found


def _pending_after(session: Session, last_id: int, limit: int) -> list[models.OutboxItem]:
    return list(
        session.scalars(
            sa.select(models.OutboxItem)
            .where(models.OutboxItem.delivered_at.is_(None), models.OutboxItem.id > last_id)
            .order_by(models.OutboxItem.id)
            .limit(limit)
        )
    )


def _count_pending_after(session: Session, last_id: int) -> int:
    return int(
        session.scalar(
            sa.select(sa.func.count()).where(
                models.OutboxItem.delivered_at.is_(None), models.OutboxItem.id > last_id
            )
        )
        or 0
    )


def _due(
    items: Sequence[models.OutboxItem],
    blocked: set[tuple[str, str]],
    at: dt.datetime,
    summary: DrainSummary,
    *,
    retry_now: bool = False,
) -> list[models.OutboxItem]:
    """Items whose backoff has passed (or ``retry_now``) and whose subject has nothing waiting before them."""
    due = []
    for item in items:
        key = (item.site, item.subject_id)
        not_yet = not retry_now and item.next_attempt_at is not None and item.next_attempt_at > at
        if key in blocked or not_yet:
            blocked.add(key)
            summary.waiting += 1
            continue
        due.append(item)
    return due


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
