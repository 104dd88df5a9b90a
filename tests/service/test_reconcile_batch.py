"""Reconciling a derivation batch at once gives what reconciling its subjects one by one gives.

``records.reconcile_subjects`` reads a batch's stored records with one query
and writes its new records and outbox items in bulk; the sync relies on it
queuing the same outbox items, in the same order, as one
``reconcile_records`` call per subject would.  Held on both store backends,
over a first load (bulk inserts) and a second round with new, changed,
unchanged, retracted and revived records.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from adapter.store import bulk_insert, db, models, records

SUBJECTS = [f"S-{number:02d}" for number in range(12)]


def first_round(subject_id: str) -> dict[str, dict[str, Any]]:
    """Three records per subject, so a batch of twelve writes in bulk."""
    return {
        f"{subject_id}-{kind}": {"record_type": kind, "subject": subject_id, "value": 1}
        for kind in ("Transplant", "Collection", "Cycle")
    }


def second_round(subject_id: str, number: int) -> dict[str, dict[str, Any]]:
    """Per subject: one changed, one dropped (retracted), one kept, one new; every fourth gets none."""
    if number % 4 == 3:
        return {}
    payloads = first_round(subject_id)
    payloads[f"{subject_id}-Transplant"]["value"] = 2
    del payloads[f"{subject_id}-Collection"]
    payloads[f"{subject_id}-Eligibility"] = {"record_type": "Eligibility", "subject": subject_id}
    return payloads


def third_round(subject_id: str) -> dict[str, dict[str, Any]]:
    """A retracted record derives again (revived), and the rest as the first round."""
    return first_round(subject_id)


def keyed(site: str, payloads: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Record ids are unique across sites: each way's own, the site as prefix."""
    return {f"{site}:{record_id}": payload for record_id, payload in payloads.items()}


def stored_state(sessions: Any, site: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(records by id, outbox items in queue order), without the site, its id prefix and moments."""
    record, item = models.RecordRow, models.OutboxItem
    with sessions() as session:
        rows = session.execute(
            sa.select(record.record_id, record.subject_id, record.record_type)
            .add_columns(record.content_hash, record.payload, record.retracted)
            .where(record.site == site)
            .order_by(record.record_id)
        ).all()
        queued = session.execute(
            sa.select(item.subject_id, item.record_id, item.operation, item.payload)
            .where(item.site == site)
            .order_by(item.id)
        ).all()
    unkeyed = len(site) + 1
    return (
        [(r[0][unkeyed:], *r[1:]) for r in rows],
        # a retraction's tombstone names its record and site (its content hash follows them)
        [
            (q[0], q[1][unkeyed:], q[2], q[3].replace(f'"{site}:', '"').replace(f'"{site}"', '""'))
            for q in queued
        ],
    )


def test_a_batch_reconciles_as_its_subjects_one_by_one(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = db.open_store(store_url)
    bulk_ways: list[str] = []
    for way in ("_copy", "_executemany"):
        real = getattr(bulk_insert, way)

        def recording(connection: Any, table: Any, rows: Any, way: str = way, real: Any = real) -> None:
            bulk_ways.append(table.name)
            real(connection, table, rows)

        monkeypatch.setattr(bulk_insert, way, recording)

    rounds = [
        {s: first_round(s) for s in SUBJECTS},
        {s: second_round(s, n) for n, s in enumerate(SUBJECTS)},
        {s: third_round(s) for s in SUBJECTS},
    ]
    counts: dict[str, list[tuple[int, int]]] = {"batch": [], "single": []}
    for payloads_by_subject in rounds:
        with sessions.begin() as session:
            batch = {s: keyed("batch", payloads) for s, payloads in payloads_by_subject.items()}
            counts["batch"].append(records.reconcile_subjects(session, "batch", batch))
        with sessions.begin() as session:
            upserts = retractions = 0
            for subject_id, payloads in payloads_by_subject.items():
                u, r = records.reconcile_records(session, "single", subject_id, keyed("single", payloads))
                upserts, retractions = upserts + u, retractions + r
            counts["single"].append((upserts, retractions))

    assert counts["batch"] == counts["single"] == [(36, 0), (18, 18), (27, 9)]
    assert stored_state(sessions, "batch") == stored_state(sessions, "single")
    assert "records" in bulk_ways and "outbox" in bulk_ways, "a first-load batch writes in bulk"


def test_a_batch_of_no_subjects_writes_nothing(store_url: str) -> None:
    sessions = db.open_store(store_url)
    with sessions.begin() as session:
        assert records.reconcile_subjects(session, "none", {}) == (0, 0)
    assert stored_state(sessions, "none") == ([], [])
