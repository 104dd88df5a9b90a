"""Issues the derivation raises keep their lifecycle when a batch of subjects writes them together.

``adapter.sync.derive`` derives a few dozen subjects per transaction and
writes their derivation issues (``derive:<subject>``) with a few statements
per batch (``issues_batch.PageIssues``), then clears their dirty marks in one
statement.  The issue must still open, stay one issue over passes, resolve
when the cause is gone and reopen when it comes back.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import sqlalchemy as sa

from adapter import sync
from adapter.store import db, models, state

from support import demo_sandbox

SITE = "demo-north"
TRANSPLANT_ID = "prc-81347760c93d"  # N-001's autologous transplant, 2025-04-08


def second_transplant(procedures: Path, *, present: bool) -> None:
    """Add (or take away) a second completed transplant of the same subject on another day."""
    lines = [line for line in procedures.read_bytes().splitlines() if b'"prc-second-hsct"' not in line]
    if present:
        original = next(orjson.loads(line) for line in lines if TRANSPLANT_ID.encode() in line)
        twin = {**original, "id": "prc-second-hsct", "performedDateTime": "2025-05-20T09:00:00-05:00"}
        lines.append(orjson.dumps(twin))
    procedures.write_bytes(b"\n".join(lines) + b"\n")


def derivation_issues(sessions: object) -> list[tuple[str, str, list[str]]]:
    """(kind, status, sources) of every issue a derivation raised."""
    with sessions() as session:  # type: ignore[operator]
        issues = session.scalars(sa.select(models.IssueRow).where(models.IssueRow.scope.like("subject:%")))
        found = []
        for issue in issues:
            sources = session.scalars(
                sa.select(models.IssueSource.source).where(models.IssueSource.issue_key == issue.key)
            )
            found.append((issue.kind, issue.status, sorted(sources)))
        dirty = session.scalar(sa.select(sa.func.count()).select_from(models.DirtySubject))
    assert dirty == 0, "every derived subject's dirty mark is cleared"
    return found


def test_a_derivation_issue_opens_resolves_and_reopens_across_passes(tmp_path: Path) -> None:
    config = demo_sandbox(tmp_path)
    config = config.model_copy(update={"sites": [s for s in config.sites if s.id == SITE]})
    setup, sessions = sync.SiteSetup.load(config, config.sites[0]), db.open_store(config.store.url)
    procedures = config.sites[0].source.path / "Procedure.ndjson"  # type: ignore[union-attr]

    sync.sync_site(setup, sessions)
    assert derivation_issues(sessions) == []

    second_transplant(procedures, present=True)
    sync.sync_site(setup, sessions)
    ((kind, status, sources),) = derivation_issues(sessions)
    assert (kind, status) == ("ambiguous_match", "open") and len(sources) == 1
    assert sources[0].startswith("derive:")

    sync.sync_site(setup, sessions)  # nothing changed: the same one issue, still open
    assert derivation_issues(sessions) == [(kind, "open", sources)]

    second_transplant(procedures, present=False)
    sync.sync_site(setup, sessions)
    assert derivation_issues(sessions) == [(kind, "resolved", [])]

    second_transplant(procedures, present=True)
    sync.sync_site(setup, sessions)
    assert derivation_issues(sessions) == [(kind, "open", sources)]


def test_a_batch_reads_each_subjects_facts_as_one_subject_read_would(tmp_path: Path) -> None:
    """``derive_dirty`` reads a batch's facts in one query: per subject, the same facts in the same order."""
    config = demo_sandbox(tmp_path)
    config = config.model_copy(update={"sites": [s for s in config.sites if s.id == SITE]})
    setup, sessions = sync.SiteSetup.load(config, config.sites[0]), db.open_store(config.store.url)
    sync.sync_site(setup, sessions)
    subjects = [*sorted(setup.roster.subject_ids), "NOT-ENROLLED"]
    with sessions() as session:
        batch = state.subjects_fact_payloads(session, SITE, subjects)
        for subject_id in subjects:
            one_by_one = state.subject_facts(session, SITE, subject_id)
            assert state.facts_from_json(batch[subject_id]) == one_by_one, subject_id
    assert sum(len(payloads) > 0 for payloads in batch.values()) >= 3 and batch["NOT-ENROLLED"] == []
