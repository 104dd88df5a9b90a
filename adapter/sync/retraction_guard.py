"""The guard against mass retraction: an empty export is not a mass deletion.

A source that lists everything (an NDJSON folder, a full REST or Bulk pass)
tells the adapter what was deleted at the site by what it no longer lists.
The same silence comes from a truncated export file, a file the export job
did not write, or a search the EHR suddenly answers with nothing; trusting
it would retract every record of a type from the trial repository, with
exit 0.  So a pass that would retire *all* stored resources of a type, or
more than ``max_retraction_share`` of them, retires none of that type:

- a site-level issue of kind ``retraction_held`` names the type and the
  counts (and resolves by itself once the source lists them again);
- the pass's summary carries the held counts, so ``sync`` exits with
  ``EXIT_RETRACTION_HELD`` and the service logs a warning and exports
  ``trial_adapter_retractions_held``;
- a person who knows the deletion is real accepts it (``accept``, audited);
  the next pass that lists the type completely then retires up to the
  accepted number, and the approval is used up whatever that pass finds.

One deleted resource always goes through: a single real deletion (or a
type's last remaining resource) is never held.  Entered-in-error is a status,
not a deletion, and is untouched by the guard.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapter import actors, errors
from adapter.mapping.issues import IssueKind, MappingIssue
from adapter.store import models, state
from adapter.store.models import utcnow

ACCEPT_ACTION = "retraction.accept"
SCOPE_PREFIX = "retire:"


class NothingHeld(errors.AdapterError):
    """An approval was asked for a type whose retraction is not held back."""

    exit_code = errors.EXIT_USAGE


@dataclass(frozen=True)
class Vanished:
    """One resource type at one site: how many are stored, how many the source no longer lists."""

    resource_type: str
    stored: int
    vanished: int

    @property
    def share(self) -> float:
        return self.vanished / self.stored if self.stored else 0.0


def is_suspicious(counts: Vanished, max_share: float) -> bool:
    """All of a type, or more than ``max_share`` of it, gone at once (never a single resource)."""
    if counts.vanished < 2:
        return False
    return counts.vanished >= counts.stored or counts.share > max_share


def vanished_counts(session: Session, site: str, run_id: int) -> list[Vanished]:
    """Per resource type: stored (not deleted) resources, and those this pass did not see."""
    row = models.SourceResource
    not_seen = sa.case((row.last_seen_run < run_id, 1), else_=0)
    query = (
        sa.select(row.resource_type, sa.func.count(), sa.func.sum(not_seen))
        .where(row.site == site, row.outcome != "deleted")
        .group_by(row.resource_type)
        .order_by(row.resource_type)
    )
    return [
        Vanished(resource_type, int(stored), int(vanished or 0))
        for resource_type, stored, vanished in session.execute(query)
    ]


def use_approval(session: Session, site: str, resource_type: str, run_id: int) -> int:
    """The number of resources a person accepted to retire for this type (0: none); used up now."""
    approvals = list(
        session.scalars(
            sa.select(models.RetractionApproval).where(
                models.RetractionApproval.site == site,
                models.RetractionApproval.resource_type == resource_type,
                models.RetractionApproval.consumed_at.is_(None),
            )
        )
    )
    for approval in approvals:
        approval.consumed_at, approval.consumed_run = utcnow(), run_id
    return max((approval.max_count for approval in approvals), default=0)


def hold(session: Session, site: str, counts: Vanished, *, reported_deleted: bool = False) -> None:
    """Raise (or keep) the site-level issue that says what was held back and how to go on.

    ``reported_deleted``: the source named the deletions (a type's history,
    an export's deleted files) instead of leaving resources out of a
    complete listing; the next full sweep checks them.
    """
    scope = SCOPE_PREFIX + counts.resource_type
    percent = round(100 * counts.share)
    accept = (
        f'accept it: trial-adapter accept-retraction --site {site} --type {counts.resource_type} --reason "…"'
    )
    if reported_deleted:
        detail = (
            f"the source reports {counts.vanished} of the {counts.stored} stored {counts.resource_type} "
            f"resources deleted ({percent} %); nothing of that type was retracted. A broken history or "
            "export can look like this. The next full sweep lists the type again: if they are there, "
            "this resolves; if not, they are held there too. If the site really deleted them, "
            f"{accept}; the next full sweep then retires them"
        )
    else:
        detail = (
            f"the source no longer lists {counts.vanished} of the {counts.stored} stored "
            f"{counts.resource_type} resources ({percent} %); nothing of that type was retracted. "
            "An emptied or missing export file, or a search that failed quietly, looks exactly like "
            "this: fix the export and this resolves at the next sync. If the site really deleted them, "
            + accept
        )
    issue = MappingIssue(
        site=site,
        kind=IssueKind.RETRACTION_HELD,
        scope=scope,
        code=counts.resource_type,
        value=str(counts.vanished),
        detail=detail,
    )
    state.replace_issues(session, site, scope, [issue])


def release(session: Session, site: str, resource_type: str) -> None:
    """The type is no longer held back: its issue resolves."""
    state.replace_issues(session, site, SCOPE_PREFIX + resource_type, [])


@dataclass(frozen=True)
class Acceptance:
    site: str
    resource_type: str
    max_count: int


def accept(
    sessions: sessionmaker[Session], site: str, resource_type: str, reason: str, *, actor: str
) -> Acceptance:
    """Record a person's yes to the retraction held back for one type; audited.

    The approval covers the number of resources held back now, so a larger
    loss found later is held again.
    """
    actor = actors.check_actor(actor)
    reason = " ".join(reason.split())[:1000]
    if not reason:
        raise NothingHeld("a reason is required: say how you know the site deleted them")
    key = f"{site}|{IssueKind.RETRACTION_HELD.value}|{SCOPE_PREFIX}{resource_type}"
    with sessions.begin() as session:
        issue = session.get(models.IssueRow, key)
        if issue is None or issue.status not in ("open", "ignored"):
            held = held_types(session, site)
            known = ", ".join(held) if held else "nothing"
            raise NothingHeld(
                f"no retraction of {resource_type} is held back at site {site} (held back there: {known})"
            )
        count = int(issue.value or 0)
        session.add(
            models.RetractionApproval(
                site=site, resource_type=resource_type, max_count=count, actor=actor, reason=reason
            )
        )
        state.audit(
            session,
            actor,
            ACCEPT_ACTION,
            key,
            site=site,
            resource_type=resource_type,
            max_count=count,
            reason=reason,
        )
    return Acceptance(site=site, resource_type=resource_type, max_count=count)


def held_types(session: Session, site: str | None = None) -> list[str]:
    """Resource types whose retraction is held back now (open ``retraction_held`` issues)."""
    query = sa.select(models.IssueRow.code).where(
        models.IssueRow.kind == IssueKind.RETRACTION_HELD.value, models.IssueRow.status == "open"
    )
    if site is not None:
        query = query.where(models.IssueRow.site == site)
    return sorted({code for code in session.scalars(query) if code})


def held_counts(session: Session) -> list[tuple[str, str, int]]:
    """(site, resource type, resources held back) for every open hold, for metrics and status."""
    rows = session.execute(
        sa.select(models.IssueRow.site, models.IssueRow.code, models.IssueRow.value).where(
            models.IssueRow.kind == IssueKind.RETRACTION_HELD.value, models.IssueRow.status == "open"
        )
    )
    return [(site, code or "", int(value or 0)) for site, code, value in rows]
