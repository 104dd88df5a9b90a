"""Keeping a subject's stored records equal to what derives, and queuing the changes.

``reconcile_records`` is where derived records meet the outbox: a new or
changed record becomes an upsert to deliver, a record that no longer derives
becomes a retraction, and an unchanged one becomes nothing, which is what
makes re-running a sync send nothing twice.  It runs inside the caller's
transaction; the caller commits.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.store import models
from adapter.store.hashing import canonical_json, substance_hash
from adapter.store.models import utcnow

# Run once per subject, built once with bound parameters: building a
# SQLAlchemy statement took longer than SQLite took to run it.
_SUBJECT_RECORDS = sa.select(models.RecordRow).where(
    models.RecordRow.site == sa.bindparam("site"), models.RecordRow.subject_id == sa.bindparam("subject")
)


def reconcile_records(
    session: Session,
    site: str,
    subject_id: str,
    payloads: dict[str, dict[str, Any]],
) -> tuple[int, int]:
    """Make the stored records of one subject equal ``payloads``; enqueue the changes.

    ``payloads`` maps record id to the outgoing (pseudonymized) JSON.  A new or
    changed record enqueues an upsert; a stored record that no longer derives
    enqueues a retraction.  Unchanged records enqueue nothing, which is what
    makes re-running a sync send nothing twice.  "Changed" means what the
    record says (``substance_hash``): a record that differs only in its
    catalog version stamp keeps the stored payload, the one the repository
    has, and is not sent again.  Returns (upserts, retractions).
    """
    stored = {
        row.record_id: row for row in session.scalars(_SUBJECT_RECORDS, {"site": site, "subject": subject_id})
    }
    upserts = retractions = 0
    now = utcnow()
    new_records: list[dict[str, Any]] = []
    outbox: list[dict[str, Any]] = []
    for record_id in sorted(payloads):
        payload = payloads[record_id]
        digest = substance_hash(payload)
        row = stored.get(record_id)
        if row is not None and not row.retracted:
            if row.content_hash == digest:
                continue
            if _same_substance(row.payload, payload):
                row.content_hash = digest  # stored before hashes left the provenance out
                continue
        body = canonical_json(payload)  # serialized once: stored record and outbox item
        record_type, text = payload["record_type"], body.decode()
        if row is None:
            new_records.append(
                {
                    "record_id": record_id,
                    "site": site,
                    "subject_id": subject_id,
                    "record_type": record_type,
                    "content_hash": digest,
                    "payload": text,
                    "retracted": False,
                    "updated_at": now,
                }
            )
        else:
            row.record_type = record_type
            row.content_hash = digest
            row.payload = text
            row.retracted = False
            row.updated_at = now
        outbox.append(_outbox_row(site, subject_id, record_id, record_type, "upsert", text, digest))
        upserts += 1
    for record_id, row in sorted(stored.items()):
        if record_id in payloads or row.retracted:
            continue
        row.retracted = True
        row.updated_at = now
        tombstone = {
            "record_id": record_id,
            "record_type": row.record_type,
            "subject_id": subject_id,
            "site": site,
        }
        body = canonical_json(tombstone)
        outbox.append(
            _outbox_row(
                site,
                subject_id,
                record_id,
                row.record_type,
                "retract",
                body.decode(),
                hashlib.sha256(body).hexdigest(),
            )
        )
        retractions += 1
    # New records and outbox items in bulk (Core executemany, in order), not as ORM objects.
    connection = session.connection()
    if new_records:
        connection.execute(sa.insert(models.RecordRow), new_records)
    if outbox:
        connection.execute(sa.insert(models.OutboxItem), outbox)
    return upserts, retractions


def _same_substance(stored_payload: str, payload: dict[str, Any]) -> bool:
    """Whether a stored record says what ``payload`` says (its provenance aside)."""
    try:
        stored = orjson.loads(stored_payload)
    except orjson.JSONDecodeError:
        return False
    return isinstance(stored, dict) and substance_hash(stored) == substance_hash(payload)


def _outbox_row(
    site: str,
    subject_id: str,
    record_id: str,
    record_type: str,
    operation: str,
    payload: str,
    digest: str,
) -> dict[str, Any]:
    return {
        "site": site,
        "subject_id": subject_id,
        "record_id": record_id,
        "record_type": record_type,
        "operation": operation,
        "payload": payload,
        "content_hash": digest,
    }
