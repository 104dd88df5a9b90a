"""The audit log: who did what, when, with the value before and after; and Undo.

Every fix lands here, and the page of one entry is also where a fix sends
the data manager afterwards: it shows how many protocol records changed
and which issues resolved.  Undo is offered on that page: data managers may
undo their own actions, admins anyone's.  The log itself is never edited;
an undo is a new entry that points to the one it reverses.  Undoing a
mapping fix re-maps the site, so it runs as a background job like the fix
did (``views.issue``); reopening an ignored issue is done at once.  The log
page also lists the console's recent fix jobs.
"""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from adapter import errors
from adapter.reconciliation import actions, undoing
from adapter.reconciliation.override_fix import FixProgress
from adapter.store import models
from adapter.web import context, params, render
from adapter.web.auth import AnyUser, Fixer, Forbidden, Operator
from adapter.web.jobs import JobOrder, JobRefused

router = APIRouter()

AUDIT_PAGE = 100


def audit_query(actor: str = "", action: str = "", site: str = "") -> sa.Select[models.AuditEntry]:
    query = sa.select(models.AuditEntry).order_by(models.AuditEntry.id.desc())
    if actor:
        query = query.where(models.AuditEntry.actor == actor)
    if action:
        query = query.where(models.AuditEntry.action == action)
    if site:
        query = query.where(
            sa.or_(
                models.AuditEntry.target.startswith(f"{site}:"),
                models.AuditEntry.target.startswith(f"{site}|"),
            )
        )
    return query


@router.get("/audit")
def audit_log(
    request: Request,
    user: AnyUser,
    db: Annotated[Session, Depends(context.db)],
    actor: str = "",
    action: str = "",
    site: str = "",
    page: params.PageNumber = 1,
) -> Response:
    entries = list(
        db.scalars(audit_query(actor, action, site).limit(AUDIT_PAGE).offset((page - 1) * AUDIT_PAGE))
    )
    undone = _undone(db, [e.id for e in entries])
    return render.page(
        request,
        "audit.html",
        user,
        title="Audit log",
        nav="audit",
        entries=entries,
        undone=undone,
        actors=sorted(v for v in db.scalars(sa.select(models.AuditEntry.actor).distinct()) if v),
        actions=sorted(v for v in db.scalars(sa.select(models.AuditEntry.action).distinct()) if v),
        actor=actor,
        action=action,
        site=site,
        page=page,
        more=len(entries) == AUDIT_PAGE,
        jobs=context.of(request).jobs.recent(),
    )


@router.get("/audit/{entry_id}")
def audit_entry(
    request: Request,
    entry_id: params.AuditEntryId,
    user: AnyUser,
    db: Annotated[Session, Depends(context.db)],
) -> Response:
    return _render_entry(request, db, user, _entry(db, entry_id))


@router.post("/audit/{entry_id}/undo")
def undo(
    request: Request,
    entry_id: params.AuditEntryId,
    user: Fixer,
    db: Annotated[Session, Depends(context.db)],
) -> Response:
    entry = _entry(db, entry_id)
    if not may_undo(user, entry):
        raise Forbidden("Data managers can undo their own actions; ask an admin to undo someone else's.")
    action, detail = entry.action, dict(entry.detail or {})
    db.rollback()  # end this request's read snapshot before the undo writes
    console = context.of(request)
    config, sessions, actor = console.config, console.sessions, user.username

    def check() -> None:
        undoing.undo_plan(config, sessions, entry_id)

    def work(progress: FixProgress) -> actions.FixResult:
        # Checked again inside: a fix that ran before this one may have changed the same entry.
        return undoing.undo(config, sessions, entry_id, actor=actor, progress=progress)

    try:
        if action not in actions.MAPPING_ACTIONS:  # reopening an ignored issue re-maps nothing
            result = undoing.undo(config, sessions, entry_id, actor=actor)
            return RedirectResponse(f"/audit/{result.audit_id}", status_code=303)
        what, issue_key = f"Undo audit entry #{entry_id}", detail.get("issue")
        order = JobOrder(detail["site"], actions.UNDO, what, actor, issue_key=issue_key, undoes=entry_id)
        job = console.jobs.submit(order, work, check=check)
    except (actions.FixRefused, errors.MappingError, errors.ConfigError, JobRefused) as exc:
        db.expire_all()
        return _render_entry(request, db, user, _entry(db, entry_id), error=str(exc), status_code=409)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


def may_undo(user: Operator, entry: models.AuditEntry) -> bool:
    return (
        entry.action in actions.UNDOABLE
        and user.can_fix
        and (user.role.is_admin or entry.actor == user.username)
    )


def _entry(db: Session, entry_id: int) -> models.AuditEntry:
    entry = db.get(models.AuditEntry, entry_id)
    if entry is None:
        raise HTTPException(404, f"No audit entry {entry_id}.")
    return entry


def _undone(db: Session, ids: list[int]) -> dict[int, int]:
    """audit id -> id of the entry that undid it."""
    if not ids:
        return {}
    rows = db.execute(
        sa.select(models.AuditEntry.id, models.AuditEntry.target).where(
            models.AuditEntry.action == actions.UNDO,
            models.AuditEntry.target.in_([f"audit:{i}" for i in ids]),
        )
    )
    return {int(target.removeprefix("audit:")): undo_id for undo_id, target in rows}


def _render_entry(
    request: Request,
    db: Session,
    user: Operator,
    entry: models.AuditEntry,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    console = context.of(request)
    detail = dict(entry.detail or {})
    issue_key = detail.get("issue") or (entry.target if entry.action == actions.IGNORE_ISSUE else None)
    return render.page(
        request,
        "audit_entry.html",
        user,
        status_code=status_code,
        title=f"Audit entry {entry.id}",
        nav="audit",
        entry=entry,
        detail=detail,
        undone_by=undoing.undone_by(db, entry.id),
        can_undo=may_undo(user, entry),
        issue_token=console.tokens.token(issue_key) if issue_key else None,
        resolved=[(key, console.tokens.token(key)) for key in detail.get("issues_resolved", [])],
        opened=[(key, console.tokens.token(key)) for key in detail.get("issues_opened", [])],
        error=error,
    )
