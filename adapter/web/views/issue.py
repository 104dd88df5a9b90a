"""One issue: what raised it, and the one-step fixes for it.

The page offers only the fixes that make sense for the issue's kind: an
unknown local code can be mapped to a catalog concept or declared "not a
protocol concept"; an unknown unit spelling can be read as a UCUM unit; any
open issue can be ignored with a reason.  Each form posts to a route here,
which calls ``adapter.reconciliation.fixes`` (the same functions as
``trial-adapter map``).

An open unknown code also shows the concepts it probably means, with their
evidence (``reconciliation.suggestions``), to everyone who may read the
page; a data manager accepts one with a button.  Accepting is the map-code
fix for a concept the server suggests again when the form arrives (a
posted concept it no longer suggests is refused), with the suggestion's
score and evidence in the audit entry.

A mapping fix re-maps the whole site, which can take minutes: the route
checks it (a refusal answers at once, on this page) and hands it to the
console's ``JobRunner``, then sends the browser to the job's page
(``views.jobs``).  Ignoring an issue re-maps nothing and is done at once;
the browser goes to its audit entry, which has the Undo button.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter import errors
from adapter.mapping import catalog as catalog_mod
from adapter.mapping import overrides
from adapter.mapping.facts import KINDS_FOR_RESOURCE_TYPE
from adapter.mapping.issues import GUIDANCE, IssueKind
from adapter.reconciliation import actions, fixes, issue_query, suggestions
from adapter.reconciliation.override_fix import FixProgress, OverrideFix
from adapter.store import models
from adapter.web import context, render
from adapter.web.auth import AnyUser, Fixer, Operator
from adapter.web.jobs import JobOrder, JobRefused

router = APIRouter()


Reason = Annotated[str, Form(max_length=1000)]
# What a fix may refuse with; the issue's page shows the message.
REFUSALS = (actions.FixRefused, errors.MappingError, errors.ConfigError, JobRefused)


@router.get("/issues/{token}")
def issue_page(
    request: Request, token: str, user: AnyUser, db: Annotated[Session, Depends(context.db)]
) -> Response:
    return _render(request, db, user, _issue(request, db, token))


class _ApplyFix(Protocol):
    """``fixes.map_code``, ``map_unit`` or ``ignore_code``: site, the issue's code or unit, the new value."""

    def __call__(
        self,
        config: config_mod.Config,
        sessions: sessionmaker[Session],
        site_id: str,
        key: str,
        value: str,
        /,
        *,
        actor: str,
        issue_key: str | None = None,
        progress: FixProgress = ...,
    ) -> actions.FixResult: ...


@dataclass(frozen=True)
class _FixKind:
    """One kind of mapping fix: its check, the fix itself, and how a job names it."""

    action: str  # the audit action it writes
    check: Callable[[config_mod.Config, str, str, str], OverrideFix]
    apply: _ApplyFix
    what: str  # formatted with the issue's code or unit as ``key`` and the new value as ``value``


MAP_CODE = _FixKind(actions.MAP_CODE, fixes.map_code_fix, fixes.map_code, "Map {key} to {value}")
MAP_UNIT = _FixKind(actions.MAP_UNIT, fixes.map_unit_fix, fixes.map_unit, "Read the unit “{key}” as {value}")
IGNORE_CODE = _FixKind(
    actions.IGNORE_CODE, fixes.ignore_code_fix, fixes.ignore_code, "Not a protocol concept: {key}"
)


@router.post("/issues/{token}/map-code")
def map_code(
    request: Request,
    token: str,
    user: Fixer,
    db: Annotated[Session, Depends(context.db)],
    concept: Annotated[str, Form(max_length=64)],
) -> Response:
    issue = _issue(request, db, token)
    if not issue.code:
        return _render(request, db, user, issue, error="This issue has no code to map.", status_code=409)
    return _start_fix(request, db, user, issue, MAP_CODE, issue.code, concept)


@router.post("/issues/{token}/accept")
def accept_suggestion(
    request: Request,
    token: str,
    user: Fixer,
    db: Annotated[Session, Depends(context.db)],
    concept: Annotated[str, Form(max_length=64)],
) -> Response:
    """Map the issue's code to a suggested concept: checked against the suggestions now, run as a job."""
    issue = _issue(request, db, token)
    try:
        accepted = suggestions.choose(context.of(request).config, db, issue.key, concept)
    except REFUSALS as exc:
        return _render(request, db, user, issue, error=str(exc), status_code=409)
    return _start_fix(request, db, user, issue, _accepting(accepted.suggestion), accepted.code, concept)


def _accepting(suggestion: suggestions.IssueSuggestion) -> _FixKind:
    """The map-code fix that records ``suggestion`` in its audit entry."""
    apply = functools.partial(fixes.map_code, audit_detail=suggestion.audit_detail())
    return _FixKind(actions.MAP_CODE, fixes.map_code_fix, apply, "Map {key} to {value} (suggested)")


@router.post("/issues/{token}/map-unit")
def map_unit(
    request: Request,
    token: str,
    user: Fixer,
    db: Annotated[Session, Depends(context.db)],
    ucum: Annotated[str, Form(max_length=64)],
) -> Response:
    issue = _issue(request, db, token)
    return _start_fix(request, db, user, issue, MAP_UNIT, issue.unit or "", ucum)


@router.post("/issues/{token}/ignore-code")
def ignore_code(
    request: Request, token: str, user: Fixer, db: Annotated[Session, Depends(context.db)], reason: Reason
) -> Response:
    issue = _issue(request, db, token)
    if not issue.code:
        return _render(request, db, user, issue, error="This issue has no code to ignore.", status_code=409)
    return _start_fix(request, db, user, issue, IGNORE_CODE, issue.code, reason)


@router.post("/issues/{token}/ignore")
def ignore_issue(
    request: Request, token: str, user: Fixer, db: Annotated[Session, Depends(context.db)], reason: Reason
) -> Response:
    """Done at once (nothing is re-mapped); on success the browser goes to its audit entry."""
    issue = _issue(request, db, token)
    sessions, key = context.of(request).sessions, issue.key
    db.rollback()  # end this request's read snapshot before the fix writes
    try:
        result = fixes.ignore_issue(sessions, key, reason, actor=user.username)
    except REFUSALS as exc:
        db.expire_all()
        return _render(request, db, user, issue, error=str(exc), status_code=409)
    return RedirectResponse(f"/audit/{result.audit_id}", status_code=303)


def _start_fix(
    request: Request,
    db: Session,
    user: Operator,
    issue: models.IssueRow,
    kind: _FixKind,
    key: str,
    value: str,
) -> Response:
    """Check a mapping fix now, run it as a background job, and send the browser to the job's page."""
    console = context.of(request)
    site, issue_key, actor = issue.site, issue.key, user.username  # plain values: the job outlives ``db``

    def work(progress: FixProgress) -> actions.FixResult:
        # Checked again inside: a fix that ran before this one may have changed the same entry.
        return kind.apply(
            console.config,
            console.sessions,
            site,
            key,
            value,
            actor=actor,
            issue_key=issue_key,
            progress=progress,
        )

    order = JobOrder(site, kind.action, kind.what.format(key=key, value=value), actor, issue_key)
    try:
        job = console.jobs.submit(order, work, check=lambda: kind.check(console.config, site, key, value))
    except REFUSALS as exc:
        return _render(request, db, user, issue, error=str(exc), status_code=409)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


def _issue(request: Request, db: Session, token: str) -> models.IssueRow:
    key = context.of(request).tokens.key(db, token)
    row = db.get(models.IssueRow, key) if key else None
    if row is None:
        raise HTTPException(
            404, "No such issue. It may have been re-keyed by a newer sync; go back to the worklist."
        )
    return row


def _render(
    request: Request,
    db: Session,
    user: Operator,
    issue: models.IssueRow,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    console = context.of(request)
    sources, source_count = issue_query.issue_sources(db, issue.key)
    resource_type = sources[0][0].partition("/")[0] if sources else ""
    mappings, overrides_dir = console.config.study.mappings, console.config.overrides_dir()
    concepts = _concepts(mappings, overrides_dir, issue.site, resource_type)
    suggested_units = _unit_suggestions(mappings, overrides_dir, issue.site, issue.concept)
    suggested = suggestions.suggestions_for(console.config, db, [issue])
    return render.page(
        request,
        "issue.html",
        user,
        status_code=status_code,
        title=f"Issue: {issue.kind.replace('_', ' ')}",
        nav="worklist",
        issue=issue,
        token=console.tokens.token(issue.key),
        sources=sources,
        source_refs=[ref for ref, _glimpse, _subject in sources],
        source_count=source_count,
        concepts=concepts,
        suggested_units=suggested_units,
        suggested=suggested.get(issue.key),  # None: this issue gets no suggestions
        fix_file=str(overrides.path_for(overrides_dir, issue.site)),
        history=_history(db, issue),
        guidance=_guidance(issue.kind),
        running=console.jobs.recent(site=issue.site, active=True),
        error=error,
    )


def _guidance(kind: str) -> str | None:
    """What usually resolves an issue of this kind (``adapter.mapping.issues.GUIDANCE``)."""
    try:
        return GUIDANCE[IssueKind(kind)]
    except (ValueError, KeyError):
        return None  # a kind from a newer or older version of the adapter


def _concepts(
    mappings: Path, overrides_dir: Path, site: str, resource_type: str
) -> list[catalog_mod.Concept]:
    try:
        catalog = catalog_mod.load_catalog(mappings, site, overrides_dir)
    except errors.MappingError:
        return []
    kinds = KINDS_FOR_RESOURCE_TYPE.get(resource_type)
    return sorted(
        (c for c in catalog.concepts.values() if kinds is None or c.kind in kinds),
        key=lambda c: (c.kind.value, c.spec.label),
    )


def _unit_suggestions(mappings: Path, overrides_dir: Path, site: str, concept: str | None) -> list[str]:
    if concept is None:
        return []
    try:
        catalog = catalog_mod.load_catalog(mappings, site, overrides_dir)
    except errors.MappingError:
        return []
    spec = catalog.concepts[concept].spec if concept in catalog.concepts else None
    if spec is None or spec.unit is None:
        return []
    return list(dict.fromkeys((spec.unit, *spec.accepted_units)))


def _history(db: Session, issue: models.IssueRow) -> list[models.AuditEntry]:
    """Audit entries about this issue, its code or its unit spelling, newest first."""
    targets = {issue.key}
    if issue.code:
        targets |= {f"{issue.site}:codes:{issue.code}", f"{issue.site}:ignored_codes:{issue.code}"}
    if issue.unit:
        targets.add(f"{issue.site}:units:{issue.unit}")
    entries = list(db.scalars(sa.select(models.AuditEntry).where(models.AuditEntry.target.in_(targets))))
    undo_targets = [f"audit:{entry.id}" for entry in entries]
    if undo_targets:
        entries += db.scalars(sa.select(models.AuditEntry).where(models.AuditEntry.target.in_(undo_targets)))
    return sorted(entries, key=lambda e: e.id, reverse=True)
