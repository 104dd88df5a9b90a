"""``value_lists.among_values``: "one of these values" as queries any store accepts, on both backends.

The sync asks for stored rows by id a commit at a time (2,000 and more),
beyond what one IN list should carry.  On PostgreSQL the values travel as one
array parameter; on SQLite as IN lists of ``IDS_PER_QUERY``.  Either way every
matching row is found once and no other, for text and integer columns, in
SELECTs and UPDATEs.
"""

from __future__ import annotations

import sqlalchemy as sa

from adapter.store import bulk_insert, db, models, value_lists


def outbox_rows(count: int) -> list[dict[str, object]]:
    return [
        {
            "site": "s",
            "subject_id": f"S-{number % 7}",
            "record_id": f"rec-{number:05d}",
            "record_type": "Transplant",
            "operation": "upsert",
            "payload": "{}",
            "content_hash": "h",
        }
        for number in range(count)
    ]


def test_every_wanted_row_is_found_once_beyond_one_in_list(store_url: str) -> None:
    sessions = db.open_store(store_url)
    with sessions.begin() as session:
        bulk_insert.insert_rows(session.connection(), models.OutboxItem, outbox_rows(1300))
    item = models.OutboxItem
    wanted = [f"rec-{number:05d}" for number in range(0, 2600, 2)]  # half stored, half not
    with sessions() as session:
        conditions = value_lists.among_values(session, item.record_id, wanted)
        found = [
            record_id
            for among in conditions
            for record_id in session.scalars(sa.select(item.record_id).where(among))
        ]
        assert sorted(found) == wanted[:650]
        expected_queries = 1 if store_url.startswith("postgresql") else 3  # 1,300 values, 500 per IN list
        assert len(conditions) == expected_queries
        ids = sorted(session.scalars(sa.select(item.id)))
    with sessions.begin() as session:
        updated = sum(
            int(session.execute(sa.update(item).where(among).values(attempts=9)).rowcount or 0)  # type: ignore[attr-defined]
            for among in value_lists.among_values(session, item.id, ids[::3])
        )
    assert updated == len(ids[::3])
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).where(item.attempts == 9)) == updated


def test_no_values_ask_no_query(store_url: str) -> None:
    sessions = db.open_store(store_url)
    with sessions() as session:
        assert value_lists.among_values(session, models.OutboxItem.id, []) == []
