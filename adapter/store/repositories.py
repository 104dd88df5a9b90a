"""Which trial repository got which delivery, and what a repository still lacks.

The bookkeeping behind re-delivery on purpose (``adapter.delivery.redelivery``):
repositories are known by a fingerprint (``models.DeliveryRepository``),
every acknowledged outbox item names the one that took it
(``OutboxItem.delivered_to``), and from that follows, per current record,
whether the repository configured now already holds it.

A current record is **owed** to a repository unless

- an item of it is still pending (the outbox owes it to whichever repository
  is configured when it is delivered, so it will get there), or
- the last item of it that this repository acknowledged is an upsert of the
  record's current content (what it says: ``hashing.substance_hash``).

A record that was retracted is never owed: a repository that never had it
has nothing to withdraw.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.store import hashing, models, state
from adapter.store.models import utcnow

CHUNK = 500  # bound parameters per IN (...), well under any SQLite's limit


@dataclass(frozen=True)
class OwedRecord:
    record_id: str
    site: str
    subject_id: str
    record_type: str


def note(
    session: Session, fingerprint: str, kind: str, location: str, *, at: dt.datetime | None = None
) -> int:
    """Make the configured repository known; return how many earlier deliveries it took over.

    The first repository this state ever notes takes over the deliveries
    made before repositories were recorded (revision 0006): that history
    went to *some* repository, and the one configured when the upgraded
    adapter first runs is the best evidence of which.
    """
    moment = at or utcnow()
    first = session.scalar(sa.select(sa.func.count()).select_from(models.DeliveryRepository)) == 0
    state.insert_ignoring_duplicates(
        session,
        models.DeliveryRepository,
        [
            {
                "fingerprint": fingerprint,
                "kind": kind,
                "location": location,
                "first_used_at": moment,
                "last_used_at": moment,
            }
        ],
    )
    session.execute(
        sa.update(models.DeliveryRepository)
        .where(models.DeliveryRepository.fingerprint == fingerprint)
        .values(last_used_at=moment)
    )
    if not first:
        return 0
    claimed = session.execute(
        sa.update(models.OutboxItem)
        .where(models.OutboxItem.delivered_at.is_not(None), models.OutboxItem.delivered_to.is_(None))
        .values(delivered_to=fingerprint)
        .execution_options(synchronize_session=False)
    )
    return int(claimed.rowcount or 0)  # type: ignore[attr-defined]


def known(session: Session) -> list[models.DeliveryRepository]:
    """Every repository this state has noted, the most recently used first."""
    return list(
        session.scalars(
            sa.select(models.DeliveryRepository).order_by(models.DeliveryRepository.last_used_at.desc())
        )
    )


def owed(
    session: Session,
    fingerprint: str,
    *,
    site: str | None = None,
    record_type: str | None = None,
) -> list[OwedRecord]:
    """The current records the repository ``fingerprint`` lacks, in outbox order (site, subject, record).

    Deliveries with no recorded repository count as this one's while no
    repository has been noted yet: that is what ``note`` will decide on the
    first run, so ``check`` (which writes nothing) agrees with it.
    """
    record = models.RecordRow
    query = sa.select(
        record.record_id, record.site, record.subject_id, record.record_type, record.content_hash
    ).where(record.retracted.is_(False))
    if site is not None:
        query = query.where(record.site == site)
    if record_type is not None:
        query = query.where(record.record_type == record_type)
    current = session.execute(query.order_by(record.site, record.subject_id, record.record_id)).all()
    if not current:
        return []

    item = models.OutboxItem
    pending = set(session.scalars(sa.select(item.record_id).where(item.delivered_at.is_(None)).distinct()))
    took_it = item.delivered_to == fingerprint
    if session.scalar(sa.select(sa.func.count()).select_from(models.DeliveryRepository)) == 0:
        took_it = sa.or_(took_it, item.delivered_to.is_(None))
    last = (
        sa.select(sa.func.max(item.id).label("id"))
        .where(item.delivered_at.is_not(None), took_it)
        .group_by(item.record_id)
        .subquery()
    )
    there = {
        record_id: (item_id, operation, digest)
        for item_id, record_id, operation, digest in session.execute(
            sa.select(item.id, item.record_id, item.operation, item.content_hash).join(
                last, item.id == last.c.id
            )
        )
    }

    found: list[OwedRecord] = []
    compare: list[tuple[OwedRecord, int]] = []  # same record, hashes differ: compare what they say
    for record_id, site_id, subject_id, kind, digest in current:
        if record_id in pending:
            continue
        candidate = OwedRecord(record_id, site_id, subject_id, kind)
        held = there.get(record_id)
        if held is None or held[1] != "upsert":
            found.append(candidate)
        elif held[2] != digest:
            compare.append((candidate, held[0]))
    found += _differing(session, compare)
    return sorted(found, key=lambda r: (r.site, r.subject_id, r.record_id))


def _differing(session: Session, pairs: Sequence[tuple[OwedRecord, int]]) -> list[OwedRecord]:
    """Of (record, delivered item) pairs whose hashes differ, those whose content really differs.

    Hashes of records stored before hashes left out the catalog version
    (``hashing.PROVENANCE_FIELDS``) differ from their items' without the
    record having changed; reading both payloads settles it.
    """
    differing: list[OwedRecord] = []
    for start in range(0, len(pairs), CHUNK):
        chunk = pairs[start : start + CHUNK]
        sent = dict(
            session.execute(
                sa.select(models.OutboxItem.id, models.OutboxItem.payload).where(
                    models.OutboxItem.id.in_([item_id for _, item_id in chunk])
                )
            ).all()
        )
        stored = dict(
            session.execute(
                sa.select(models.RecordRow.record_id, models.RecordRow.payload).where(
                    models.RecordRow.record_id.in_([record.record_id for record, _ in chunk])
                )
            ).all()
        )
        for record, item_id in chunk:
            if _says(sent.get(item_id)) != _says(stored.get(record.record_id)):
                differing.append(record)
    return differing


def _says(payload: str | None) -> str | None:
    if payload is None:
        return None
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return hashing.substance_hash(data) if isinstance(data, dict) else None


def enqueue(session: Session, records: Sequence[OwedRecord]) -> int:
    """Queue an upsert of each record's stored payload, in the order given; return how many."""
    queued = 0
    connection = session.connection()
    for start in range(0, len(records), CHUNK):
        chunk = records[start : start + CHUNK]
        rows = {
            row.record_id: row
            for row in session.execute(
                sa.select(
                    models.RecordRow.record_id, models.RecordRow.payload, models.RecordRow.content_hash
                ).where(
                    models.RecordRow.record_id.in_([r.record_id for r in chunk]),
                    models.RecordRow.retracted.is_(False),
                )
            )
        }
        items = [
            {
                "site": record.site,
                "subject_id": record.subject_id,
                "record_id": record.record_id,
                "record_type": record.record_type,
                "operation": "upsert",
                "payload": rows[record.record_id].payload,
                "content_hash": rows[record.record_id].content_hash,
            }
            for record in chunk
            if record.record_id in rows
        ]
        if items:
            connection.execute(sa.insert(models.OutboxItem), items)
            queued += len(items)
    return queued
