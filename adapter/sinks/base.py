"""The one interface every trial-repository sink implements.

A sink receives a batch of deliveries in outbox order (so per-subject order
is kept) and reports, per item, whether it arrived.  Sinks must be idempotent:
delivering the same upsert twice, or retracting an absent record, leaves the
repository unchanged (DESIGN.md §5), because the outbox redelivers whatever
it could not mark as delivered, e.g. after a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class Delivery:
    item_id: int
    record_id: str
    record_type: str
    subject_id: str
    operation: Literal["upsert", "retract"]
    payload: dict[str, Any]


@dataclass(frozen=True)
class DeliveryResult:
    item_id: int
    ok: bool
    error: str | None = None


class Sink(Protocol):
    """Where protocol records go."""

    description: str

    def deliver(self, batch: Sequence[Delivery]) -> list[DeliveryResult]: ...
