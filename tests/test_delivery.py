"""The outbox: nothing is dropped, order per subject holds, failures become issues."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa

from adapter import delivery
from adapter.sinks.base import Delivery, DeliveryResult
from adapter.store import db, models, state


class FlakySink:
    """Fails every delivery while ``down`` is set; records what arrived."""

    description = "flaky"

    def __init__(self) -> None:
        self.down = True
        self.arrived: list[tuple[str, str]] = []

    def deliver(self, batch: Sequence[Delivery]) -> list[DeliveryResult]:
        if self.down:
            return [DeliveryResult(d.item_id, ok=False, error="503 Service Unavailable") for d in batch]
        self.arrived += [(d.record_id, d.operation) for d in batch]
        return [DeliveryResult(d.item_id, ok=True) for d in batch]


def test_outage_then_recovery_delivers_everything_once_in_order(tmp_path: object) -> None:
    sessions = db.open_store(f"sqlite:///{tmp_path}/state.db")
    with sessions.begin() as session:
        state.reconcile_records(session, "s", "S-1", {"a": {"record_type": "Transplant", "v": 1}})
        state.reconcile_records(session, "s", "S-1", {"a": {"record_type": "Transplant", "v": 2}})
        state.reconcile_records(session, "s", "S-1", {})  # retraction
    sink = FlakySink()
    clock = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
    for _ in range(5):  # an hour-long outage: every attempt fails
        summary = delivery.drain(sessions, sink, max_attempts=3, now=lambda: clock[0])
        clock[0] += dt.timedelta(hours=1)
    assert summary.delivered == 0
    with sessions() as session:
        failed = session.scalars(
            sa.select(models.IssueRow).where(models.IssueRow.kind == "delivery_failed")
        ).all()
        assert len(failed) == 3 and all("503" in f.detail and "stays queued" in f.detail for f in failed)
    sink.down = False
    summary = delivery.drain(sessions, sink, now=lambda: clock[0])
    assert sink.arrived == [("a", "upsert"), ("a", "upsert"), ("a", "retract")]
    assert summary.delivered == 3
    assert delivery.drain(sessions, sink, now=lambda: clock[0]).delivered == 0
    with sessions() as session:
        statuses = session.scalars(
            sa.select(models.IssueRow.status).where(models.IssueRow.kind == "delivery_failed")
        ).all()
    assert statuses == ["resolved"] * 3


def test_backoff_grows_and_is_capped() -> None:
    assert delivery.backoff(1) == dt.timedelta(seconds=30)
    assert delivery.backoff(3) == dt.timedelta(seconds=120)
    assert delivery.backoff(30) == dt.timedelta(hours=1)


def test_unchanged_records_enqueue_nothing(tmp_path: object) -> None:
    sessions = db.open_store(f"sqlite:///{tmp_path}/state.db")
    payload = {"a": {"record_type": "Transplant", "v": 1}}
    with sessions.begin() as session:
        assert state.reconcile_records(session, "s", "S-1", payload) == (1, 0)
        assert state.reconcile_records(session, "s", "S-1", payload) == (0, 0)
        assert state.reconcile_records(session, "s", "S-1", {}) == (0, 1)
        assert state.reconcile_records(session, "s", "S-1", {}) == (0, 0)
