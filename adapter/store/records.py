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

from adapter.store import bulk_insert, models, value_lists
from adapter.store.hashing import canonical_json, substance_hash
from adapter.store.models import utcnow


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
    return reconcile_subjects(session, site, {subject_id: payloads})


def reconcile_subjects(
    session: Session, site: str, payloads_by_subject: dict[str, dict[str, dict[str, Any]]]
) -> tuple[int, int]:
    """``reconcile_records`` for several subjects at once, with a few statements in all.

    A derivation batch's stored records are read with one query per few
    hundred subjects, and its new records and outbox items are written in
    bulk, instead of three statements per subject (each a round trip on
    PostgreSQL).  The outbox items queue in the order of ``payloads_by_subject``,
    subject by subject, as one call per subject would queue them.
    """
    stored: dict[str, dict[str, models.RecordRow]] = {subject_id: {} for subject_id in payloads_by_subject}
    record = models.RecordRow
    for among in value_lists.among_values(session, record.subject_id, list(payloads_by_subject)):
        for row in session.scalars(sa.select(record).where(record.site == site, among)):
            stored[row.subject_id][row.record_id] = row
    changes = _Changes(site, utcnow())
    for subject_id, payloads in payloads_by_subject.items():
        changes.reconcile(subject_id, payloads, stored[subject_id])
    # New records and outbox items in bulk, in order, not as ORM objects.
    connection = session.connection()
    bulk_insert.insert_rows(connection, models.RecordRow, changes.new_records)
    bulk_insert.insert_rows(connection, models.OutboxItem, changes.outbox)
    return changes.upserts, changes.retractions


class _Changes:
    """What reconciling subjects adds: new record rows, outbox items, and their counts.

    A changed or retracted stored record is updated in place on its ORM row,
    which the session flushes with the transaction.
    """

    def __init__(self, site: str, now: Any) -> None:
        self.site, self.now = site, now
        self.new_records: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self.upserts = self.retractions = 0

    def reconcile(
        self, subject_id: str, payloads: dict[str, dict[str, Any]], stored: dict[str, models.RecordRow]
    ) -> None:
        """One subject's upserts for new or changed records, then its retractions."""
        for record_id in sorted(payloads):
            self._upsert(subject_id, record_id, payloads[record_id], stored.get(record_id))
        for record_id, row in sorted(stored.items()):
            if record_id not in payloads and not row.retracted:
                self._retract(subject_id, record_id, row)

    def _upsert(
        self, subject_id: str, record_id: str, payload: dict[str, Any], row: models.RecordRow | None
    ) -> None:
        digest = substance_hash(payload)
        if row is not None and not row.retracted:
            if row.content_hash == digest:
                return
            if _same_substance(row.payload, payload):
                row.content_hash = digest  # stored before hashes left the provenance out
                return
        body = canonical_json(payload)  # serialized once: stored record and outbox item
        record_type, text = payload["record_type"], body.decode()
        if row is None:
            self.new_records.append(
                {
                    "record_id": record_id,
                    "site": self.site,
                    "subject_id": subject_id,
                    "record_type": record_type,
                    "content_hash": digest,
                    "payload": text,
                    "retracted": False,
                    "updated_at": self.now,
                }
            )
        else:
            row.record_type = record_type
            row.content_hash = digest
            row.payload = text
            row.retracted = False
            row.updated_at = self.now
        self.outbox.append(_outbox_row(self.site, subject_id, record_id, record_type, "upsert", text, digest))
        self.upserts += 1

    def _retract(self, subject_id: str, record_id: str, row: models.RecordRow) -> None:
        row.retracted = True
        row.updated_at = self.now
        tombstone = {
            "record_id": record_id,
            "record_type": row.record_type,
            "subject_id": subject_id,
            "site": self.site,
        }
        body = canonical_json(tombstone)
        digest = hashlib.sha256(body).hexdigest()
        self.outbox.append(
            _outbox_row(self.site, subject_id, record_id, row.record_type, "retract", body.decode(), digest)
        )
        self.retractions += 1


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
