"""Shared material for the sink tests: the demo's records as outbox deliveries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from adapter.sinks.base import Delivery

from golden import golden_records

ENQUEUED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

MakeDelivery = Callable[..., Delivery]


@pytest.fixture(scope="session")
def demo_records() -> list[dict[str, Any]]:
    """Every record of the demo's golden repository: real, pseudonymized payloads of all six types."""
    return [record for records in golden_records().values() for record in records]


@pytest.fixture
def make_delivery() -> MakeDelivery:
    """``make_delivery(record, op="upsert", item_id=None)``: an outbox item as a sink receives it.

    A retraction gets the tombstone as payload and the record as ``previous``,
    exactly as ``adapter.delivery.outbox`` builds it.
    """
    counter = iter(range(1, 1_000_000))

    def make(record: dict[str, Any], op: str = "upsert", item_id: int | None = None) -> Delivery:
        tombstone = {key: record[key] for key in ("record_id", "record_type", "subject_id", "site")}
        return Delivery(
            item_id=item_id if item_id is not None else next(counter),
            record_id=record["record_id"],
            record_type=record["record_type"],
            subject_id=record["subject_id"],
            operation="upsert" if op == "upsert" else "retract",
            payload=record if op == "upsert" else tombstone,
            previous=None if op == "upsert" else record,
            enqueued_at=ENQUEUED,
        )

    return make
