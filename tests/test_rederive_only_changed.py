"""A new version of a resource re-derives its subject only when its facts changed.

EHRs issue new versions that change nothing the mapping reads: a note, a
performer, the server's own bookkeeping.  Such a version is re-mapped: its
stored version moves on, and so does its facts' provenance
(``source_version``), but what they say is the same, so
``state.replace_facts`` marks no subject dirty and nothing is derived again.
A version whose facts say something new re-derives its subject as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter import sync
from adapter.mapping.facts import Fact
from adapter.store import db, models, state

from support import demo_sandbox

SITE = "demo-north"
TRANSPLANT_ID = "prc-81347760c93d"  # N-001's autologous transplant, 2025-04-08


def amend(procedures: Path, change: dict[str, Any]) -> None:
    """A new version of the transplant Procedure (versionId + 1) with ``change`` applied."""
    lines = procedures.read_bytes().splitlines()
    for number, line in enumerate(lines):
        if TRANSPLANT_ID.encode() in line:
            resource = orjson.loads(line)
            meta = resource["meta"]
            meta["versionId"] = str(int(meta["versionId"]) + 1)
            resource.update(change)
            lines[number] = orjson.dumps(resource)
    procedures.write_bytes(b"\n".join(lines) + b"\n")


def stored(sessions: Any) -> tuple[str, list[tuple[int, str]]]:
    """(the transplant's stored version, its facts as (row id, payload))."""
    with sessions() as session:
        version = session.scalar(
            sa.select(models.SourceResource.version).where(models.SourceResource.resource_id == TRANSPLANT_ID)
        )
        facts = session.execute(
            sa.select(models.FactRow.id, models.FactRow.payload)
            .where(models.FactRow.source_ref == f"Procedure/{TRANSPLANT_ID}")
            .order_by(models.FactRow.id)
        ).all()
    return str(version), [tuple(fact) for fact in facts]


def test_a_version_that_changes_no_fact_re_derives_nothing(tmp_path: Path) -> None:
    config = demo_sandbox(tmp_path)
    config = config.model_copy(update={"sites": [s for s in config.sites if s.id == SITE]})
    setup, sessions = sync.SiteSetup.load(config, config.sites[0]), db.open_store(config.store.url)
    procedures = config.sites[0].source.path / "Procedure.ndjson"  # type: ignore[union-attr]
    assert sync.sync_site(setup, sessions).subjects_derived > 0
    _version, facts = stored(sessions)

    amend(procedures, {"note": [{"text": "consent form scanned"}]})
    summary = sync.sync_site(setup, sessions)
    version, renamed = stored(sessions)
    assert version == "v:2", "re-mapped: the version moved on"
    provenance_moved = [p.replace('"source_version":"v:1"', '"source_version":"v:2"') for _id, p in facts]
    assert [p for _id, p in renamed] == provenance_moved, "the facts name the new version, and say the same"
    assert (summary.subjects_derived, summary.upserts) == (0, 0)

    amend(procedures, {"performedDateTime": "2025-04-09T12:01:00-05:00"})  # a day later: a new fact
    summary = sync.sync_site(setup, sessions)
    version, changed = stored(sessions)
    assert version == "v:3" and [p for _id, p in changed] != [p for _id, p in facts]
    assert summary.subjects_derived == 1 and summary.upserts >= 1, "the transplant record moved"


def test_replacing_facts_with_the_same_ones_touches_nothing(tmp_path: Path) -> None:
    sessions = db.open_store(f"sqlite:///{tmp_path / 'state.db'}")
    fact = Fact.model_validate(
        {
            "site": "s",
            "subject_id": "S-1",
            "concept": "hsct_autologous",
            "kind": "procedure",
            "effective_start": "2025-04-08T12:01:00-05:00",
            "local_date": "2025-04-08",
            "status": "completed",
            "source_ref": "Procedure/p",
            "source_version": "v:1",
            "catalog_version": "c1",
        }
    )
    moved = fact.model_copy(update={"local_date": fact.local_date.replace(day=9)})
    with sessions.begin() as session:
        assert state.replace_facts(session, "s", "Procedure/p", [fact], known=False) == {"S-1"}
        state.clear_dirty(session, "s", ["S-1"])
    with sessions.begin() as session:
        assert state.replace_facts(session, "s", "Procedure/p", [fact]) == set()
        assert state.dirty_subjects(session, "s") == []
    next_version = fact.model_copy(update={"source_version": "v:2", "catalog_version": "c2"})
    with sessions.begin() as session:  # only the provenance moved on: rewritten, nobody touched
        assert state.replace_facts(session, "s", "Procedure/p", [next_version]) == set()
        assert state.dirty_subjects(session, "s") == []
        assert state.subject_facts(session, "s", "S-1") == [next_version]
    with sessions.begin() as session:  # two copies of the resource in one page
        page = state.PageRows()
        state.replace_facts(session, "s", "Procedure/p", [moved], mark=False, page=page)
        assert state.replace_facts(session, "s", "Procedure/p", [fact], mark=False, page=page) == {"S-1"}, (
            "a copy earlier in the page replaced the stored facts: the same facts again are a change"
        )
        page.write(session)
    with sessions.begin() as session:
        assert state.replace_facts(session, "s", "Procedure/p", [moved]) == {"S-1"}
        assert state.dirty_subjects(session, "s") == ["S-1"]
        assert state.subject_facts(session, "s", "S-1") == [moved]


def test_new_versions_are_written_without_an_orm_flush_each(tmp_path: Path) -> None:
    """A pass over many new versions flushes the ORM a few times per commit, not once per resource.

    Each changed resource's facts are read and replaced through the
    session's connection; an ORM statement there flushed the previous
    resource's row first, which made a pass over a tenth of a site's
    resources in new versions slower than a full sync (bench figures in the
    issue notes).
    """
    config = demo_sandbox(tmp_path)
    config = config.model_copy(update={"sites": [s for s in config.sites if s.id == SITE]})
    setup, sessions = sync.SiteSetup.load(config, config.sites[0]), db.open_store(config.store.url)
    sync.sync_site(setup, sessions)
    observations = config.sites[0].source.path / "Observation.ndjson"  # type: ignore[union-attr]
    lines, changed = [], 0
    for line in observations.read_bytes().splitlines():
        resource = orjson.loads(line) if line.strip().startswith(b"{") else None
        if isinstance(resource, dict) and str(resource.get("meta", {}).get("versionId", "")).isdigit():
            resource["meta"]["versionId"] = str(int(resource["meta"]["versionId"]) + 1)
            resource["note"] = [{"text": "reviewed"}]
            line, changed = orjson.dumps(resource), changed + 1
        lines.append(line)
    observations.write_bytes(b"\n".join(lines) + b"\n")

    flushes: list[int] = []

    def count(_session: Session, _context: object) -> None:
        flushes.append(1)

    sa.event.listen(Session, "after_flush", count)
    try:
        summary = sync.sync_site(setup, sessions)
    finally:
        sa.event.remove(Session, "after_flush", count)
    assert changed > 300 and summary.subjects_derived == 0
    assert len(flushes) < changed / 10, f"{len(flushes)} ORM flushes for {changed} new versions"


def test_a_pass_that_finds_nothing_new_moves_last_seen_with_a_few_updates(tmp_path: Path) -> None:
    """Every stored resource listed again unchanged is marked seen in this run, a page at a time.

    The last-seen run is how a complete listing finds what vanished, so it
    must move for every resource; it used to be an ORM update per row.
    """
    config = demo_sandbox(tmp_path)
    config = config.model_copy(update={"sites": [s for s in config.sites if s.id == SITE]})
    setup, sessions = sync.SiteSetup.load(config, config.sites[0]), db.open_store(config.store.url)
    sync.sync_site(setup, sessions)

    updated_rows: list[int] = []

    def count(
        _conn: object, _cursor: object, statement: str, params: Any, _context: object, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("UPDATE SOURCE_RESOURCES"):
            updated_rows.append(len(params) if many else 1)

    engine = sessions.kw["bind"]
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        summary = sync.sync_site(setup, sessions)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    with sessions() as session:
        rows = session.execute(
            sa.select(models.SourceResource.last_seen_run, sa.func.count())
            .where(models.SourceResource.site == SITE, models.SourceResource.outcome != "deleted")
            .group_by(models.SourceResource.last_seen_run)
        ).all()
    assert summary.unchanged > 500 and summary.resources_mapped == 0
    assert [run for run, _count in rows] == [summary.run_id], "every listed resource was seen in this run"
    assert sum(updated_rows) < summary.unchanged / 50, f"{sum(updated_rows)} row updates"
