"""Undo: reverse one audited fix, if nothing has changed the same thing since.

The audit log is never edited: an undo is a new ``undo`` entry whose target
is ``audit:<id>`` of the entry it reverses, which is also how the console
tells that an entry was undone (``undone_by``).  A mapping fix is reversed
by writing its "before" value back into the site's fix file (through
``override_fix``, so it re-maps and reports like any fix); an ignored issue
is reopened.  ``undo_plan`` checks an undo without making it, so the
console can refuse at once and run the re-map in the background.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter.mapping import overrides
from adapter.reconciliation import site_files
from adapter.reconciliation.actions import (
    IGNORE_ISSUE,
    MAPPING_ACTIONS,
    UNDO,
    UNDOABLE,
    FixRefused,
    FixResult,
    check_actor,
)
from adapter.reconciliation.override_fix import FixProgress, OverrideFix, apply_fix, no_progress
from adapter.store import models, state


@dataclass(frozen=True)
class UndoPlan:
    """What undoing one audit entry takes, checked: a fix-file edit and re-map, or reopening an issue."""

    audit_id: int
    site: str | None
    fix: OverrideFix | None  # None: the entry ignored an issue; reopening it re-maps nothing
    detail: dict[str, Any]  # the entry's detail, as read when it was checked


def undo(
    config: config_mod.Config,
    sessions: sessionmaker[Session],
    audit_id: int,
    *,
    actor: str,
    progress: FixProgress = no_progress,
) -> FixResult:
    """Reverse one audited fix, if nothing has changed the same thing since."""
    check_actor(actor)
    plan = undo_plan(config, sessions, audit_id)
    if plan.fix is None:
        return _undo_ignore(sessions, audit_id, plan.detail, actor)
    assert plan.site is not None  # noqa: S101  (a mapping entry always names its site)
    return apply_fix(config, sessions, plan.site, plan.fix, actor=actor, undoes=audit_id, progress=progress)


def undo_plan(config: config_mod.Config, sessions: sessionmaker[Session], audit_id: int) -> UndoPlan:
    """What ``undo`` would do, checked without writing anything; ``FixRefused`` if it cannot."""
    with sessions() as session:
        entry = session.get(models.AuditEntry, audit_id)
        if entry is None:
            raise FixRefused(f"no audit entry {audit_id}")
        if entry.action not in UNDOABLE:
            raise FixRefused(f"{entry.action} cannot be undone")
        if undone_by(session, audit_id) is not None:
            raise FixRefused(f"audit entry {audit_id} was already undone")
        action, detail = entry.action, dict(entry.detail)
    if action == IGNORE_ISSUE:
        return UndoPlan(audit_id, detail.get("site"), None, detail)
    site_id, table, key = detail["site"], MAPPING_ACTIONS[action], detail["key"]
    current = overrides.read_override(site_files.fix_file(config, site_id)).get(table, {}).get(key)
    if current != detail["after"]:
        raise FixRefused(
            f"[{table}] {key!r} has changed since audit entry {audit_id} "
            f"(now {current!r}); undo the later change first"
        )
    fix = OverrideFix(UNDO, key, detail["before"], f"Undid audit entry {audit_id} ({action} {key})", table)
    return UndoPlan(audit_id, site_id, fix, detail)


def undone_by(session: Session, audit_id: int) -> int | None:
    """The id of the audit entry that undid ``audit_id``, if any."""
    return session.scalar(
        sa.select(models.AuditEntry.id).where(
            models.AuditEntry.action == UNDO, models.AuditEntry.target == f"audit:{audit_id}"
        )
    )


def _undo_ignore(
    sessions: sessionmaker[Session], audit_id: int, detail: dict[str, Any], actor: str
) -> FixResult:
    with sessions.begin() as session:
        entry = session.get(models.AuditEntry, audit_id)
        assert entry is not None  # noqa: S101  (checked by the caller in this request)
        row = session.get(models.IssueRow, entry.target)
        if row is None or row.status != "ignored":
            raise FixRefused(f"the issue is no longer ignored (now {row.status if row else 'gone'})")
        restored = detail.get("before") or "open"
        row.status, row.reason = restored, detail.get("reason_before")
        row.resolved_at = None if restored == "open" else row.resolved_at
        undo_entry = state.audit(
            session,
            actor,
            UNDO,
            f"audit:{audit_id}",
            undoes=audit_id,
            site=row.site,
            issue=row.key,
            before="ignored",
            after=restored,
        )
    return FixResult(
        audit_id=undo_entry.id,
        action=UNDO,
        site=row.site,
        summary=f"Undid audit entry {audit_id}: {row.key} is {restored} again",
    )
