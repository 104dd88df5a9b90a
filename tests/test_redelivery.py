"""What a repository lacks after a switch (``adapter.store.repositories``), on the state directly."""

from __future__ import annotations

from pathlib import Path

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapter.delivery import outbox
from adapter.sinks.file import FileSink
from adapter.store import db, models, records, repositories

OLD, NEW = "a" * 64, "b" * 64


def store(tmp_path: Path) -> sessionmaker[Session]:
    return db.open_store(f"sqlite:///{tmp_path}/state.db")


def owed_ids(sessions: sessionmaker[Session], fingerprint: str) -> list[str]:
    with sessions() as session:
        return [r.record_id for r in repositories.owed(session, fingerprint)]


def record(record_id: str, version: int, **extra: object) -> dict[str, dict[str, object]]:
    """One Transplant record as the sync hands it to ``records.reconcile_records``."""
    payload = {
        "record_id": record_id,
        "record_type": "Transplant",
        "subject_id": f"S-{record_id}",
        "v": version,
    }
    return {record_id: {**payload, **extra}}


def held_by(folder: Path) -> set[str]:
    lines = (folder / "Transplant.ndjson").read_bytes().splitlines()
    return {orjson.loads(line)["record_id"] for line in lines if line.strip()}


def test_owed_is_what_the_repository_lacks_of_the_current_records(tmp_path: Path) -> None:
    sessions = store(tmp_path)
    with sessions.begin() as session:
        repositories.note(session, OLD, "file", "/old")
        for record_id in ("a", "b", "c"):
            records.reconcile_records(session, "s", f"S-{record_id}", record(record_id, 1))
    outbox.drain(sessions, FileSink(tmp_path / "old"), repository=OLD)
    with sessions.begin() as session:
        records.reconcile_records(session, "s", "S-b", {})  # b retracted
        records.reconcile_records(session, "s", "S-c", record("c", 2))  # c changed
    outbox.drain(sessions, FileSink(tmp_path / "old"), repository=OLD)
    with sessions.begin() as session:
        records.reconcile_records(session, "s", "S-d", record("d", 1))  # d new, still pending
    assert owed_ids(sessions, OLD) == [], "everything current is there or on its way"

    with sessions.begin() as session:
        repositories.note(session, NEW, "file", "/new")
    assert owed_ids(sessions, NEW) == ["a", "c"], "b is retracted, d is on its way"
    with sessions.begin() as session:
        assert repositories.enqueue(session, repositories.owed(session, NEW)) == 2
    assert owed_ids(sessions, NEW) == [], "queued: nothing owed any more"
    outbox.drain(sessions, FileSink(tmp_path / "new"), repository=NEW)
    assert owed_ids(sessions, NEW) == []
    assert held_by(tmp_path / "new") == {"a", "c", "d"}

    # Back to the old repository: it has a and c as they are, but d went to the new one only,
    # and so does a change made while the new one is configured.
    assert owed_ids(sessions, OLD) == ["d"]
    with sessions.begin() as session:
        records.reconcile_records(session, "s", "S-a", record("a", 3))
    outbox.drain(sessions, FileSink(tmp_path / "new"), repository=NEW)
    assert owed_ids(sessions, OLD) == ["a", "d"]


def test_an_old_style_hash_with_the_same_content_is_not_owed(tmp_path: Path) -> None:
    """Records stored before hashes left out the catalog version differ in hash, not in content."""
    sessions = store(tmp_path)
    with sessions.begin() as session:
        repositories.note(session, OLD, "file", "/old")
        records.reconcile_records(session, "s", "S-r", record("r", 1, catalog_version="x"))
    outbox.drain(sessions, FileSink(tmp_path / "old"), repository=OLD)
    with sessions.begin() as session:
        session.execute(sa.update(models.OutboxItem).values(content_hash="an-old-full-content-hash"))
    assert owed_ids(sessions, OLD) == []
    with sessions.begin() as session:
        session.execute(sa.update(models.OutboxItem).values(payload='{"record_type": "Transplant", "v": 0}'))
    assert owed_ids(sessions, OLD) == ["r"], "what it says differs: owed"


def test_the_first_repository_noted_takes_over_unattributed_deliveries_once(tmp_path: Path) -> None:
    sessions = store(tmp_path)
    with sessions.begin() as session:
        records.reconcile_records(session, "s", "S-r", record("r", 1))
    outbox.drain(sessions, FileSink(tmp_path / "old"))  # no repository recorded, as before 0006
    assert owed_ids(sessions, OLD) == [], "unattributed history counts as the configured repository's"
    with sessions.begin() as session:
        assert repositories.note(session, OLD, "file", "/old") == 1
        assert repositories.note(session, OLD, "file", "/old") == 0
        assert repositories.note(session, NEW, "file", "/new") == 0
        assert [r.fingerprint for r in repositories.known(session)] in ([NEW, OLD], [OLD, NEW])
    assert owed_ids(sessions, NEW) == ["r"]
