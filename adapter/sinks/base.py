"""The one interface every trial-repository sink implements.

A sink receives a batch of deliveries in outbox order (so per-subject order
is kept) and reports, per item, whether it arrived.  Sinks must be idempotent:
delivering the same upsert twice, or retracting an absent record, leaves the
repository unchanged (docs/design.md §5), because the outbox redelivers whatever
it could not mark as delivered, e.g. after a crash.

Three rules keep the outbox's promises without each sink re-inventing them:

- An item the sink did not try gets **no result**; the outbox keeps it
  waiting without counting an attempt.  A sink stops trying a subject's
  later items once one of its items failed, so a retraction never overtakes
  the upsert it follows.
- A failure that says the repository as a whole is unusable right now (no
  connection, 5xx, 429, refused credentials) is an **outage**: the sink stops
  the batch there, and the outbox ends the pass instead of knocking on a
  closed door with every remaining item.
- Retries are the outbox's job (exponential backoff, then a
  ``delivery_failed`` issue); a sink makes one attempt per item per call.

``probe`` is what ``trial-adapter check`` asks of a sink: can the
repository be reached, does it take the credentials, and could the sink
write there, found out *without writing anything* (a FHIR server's
``metadata`` and a search, REDCap's version export, a HEAD on an HTTP
endpoint, a temporary file in a folder).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class Delivery:
    """One outbox item, as the sink sees it.

    ``payload`` is the pseudonymized record (for a retraction, a tombstone
    with the record id, type and subject).  ``previous`` is, for a
    retraction, the record as it was last enqueued: sinks that must find a
    record by its content (a REDCap repeat instance) or that keep it marked
    rather than deleted (FHIR ``entered-in-error``) need it.  ``enqueued_at``
    is when the change was recorded, stable across redeliveries.
    """

    item_id: int
    record_id: str
    record_type: str
    subject_id: str
    operation: Literal["upsert", "retract"]
    payload: dict[str, Any]
    previous: dict[str, Any] | None = None
    enqueued_at: dt.datetime | None = None

    @property
    def content(self) -> dict[str, Any] | None:
        """The record's fields: the payload of an upsert, the withdrawn record of a retraction."""
        return self.payload if self.operation == "upsert" else self.previous


@dataclass(frozen=True)
class DeliveryResult:
    item_id: int
    ok: bool
    error: str | None = None
    outage: bool = False  # the repository as a whole is unusable now: end the pass


@dataclass(frozen=True)
class PlannedRequest:
    """One request a sink would make, as data: what ``push --dry-run`` shows.

    Credentials are added only when the request is sent, so a plan can be
    printed, logged or pasted into a ticket as it is.
    """

    method: str
    target: str
    body: Any
    item_ids: tuple[int, ...]


@dataclass(frozen=True)
class Probe:
    """What ``check`` found out about the repository: a verdict and what it rests on, in plain words.

    ``ok`` with a ``warning`` works but deserves a look (a server that does
    not list transactions, say).  Credentials are never in ``detail``.
    """

    ok: bool
    detail: str
    warning: bool = False


class Sink(Protocol):
    """Where protocol records go."""

    description: str
    batch_size: int  # outbox items per ``deliver`` call that suit this sink

    def deliver(self, batch: Sequence[Delivery]) -> list[DeliveryResult]: ...

    def preview(self, batch: Sequence[Delivery]) -> list[PlannedRequest]: ...

    def probe(self) -> Probe:
        """Reach the repository and try the credentials without writing anything to it.

        A credential that cannot be read raises ``ConfigError``, as delivering would.
        """
        ...


def failed(items: Sequence[Delivery], error: str, *, outage: bool = False) -> list[DeliveryResult]:
    """The same failure for each of ``items``."""
    return [DeliveryResult(item.item_id, ok=False, error=error, outage=outage) for item in items]


def delivered(items: Sequence[Delivery]) -> list[DeliveryResult]:
    return [DeliveryResult(item.item_id, ok=True) for item in items]


def last_change_per_record(items: Sequence[Delivery]) -> list[Delivery]:
    """Each record's last change in ``items``, in the order of those last changes.

    The repository's end state depends only on a record's last change, and a
    FHIR transaction may not touch one resource twice
    (https://hl7.org/fhir/R4/http.html#trules), so batching sinks send only
    the last and acknowledge the earlier ones with it.
    """
    last = {item.record_id: item for item in items}
    return [item for item in items if last[item.record_id] is item]


def subject_groups(items: Sequence[Delivery]) -> list[list[Delivery]]:
    """``items`` split by subject, each group in outbox order, groups in order of first appearance."""
    groups: dict[str, list[Delivery]] = {}
    for item in items:
        groups.setdefault(item.subject_id, []).append(item)
    return list(groups.values())
