"""What a fix changed: the records it queued and the issues it resolved or opened.

A fix takes a ``Snapshot`` of the site before it re-maps and compares the
store with it afterwards.  The outbox is the record of what changed: the fix
holds the site's lock, so every item of the site queued after the snapshot
is the fix's own.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.store import models


@dataclass(frozen=True)
class Snapshot:
    """The site's last outbox item and open issues, before the fix."""

    last_outbox_id: int
    open_issues: frozenset[str]

    @classmethod
    def take(cls, session: Session, site: str) -> Snapshot:
        last = int(session.scalar(sa.select(sa.func.max(models.OutboxItem.id))) or 0)
        return cls(last, frozenset(_open_issue_keys(session, site)))


@dataclass(frozen=True)
class Changes:
    """The protocol records a fix queued for the repository and the issues it moved."""

    records_changed: int
    records_by_type: dict[str, int]  # sorted by record type
    subjects: tuple[str, ...]
    issues_resolved: tuple[str, ...]
    issues_opened: tuple[str, ...]

    @classmethod
    def since(cls, session: Session, site: str, before: Snapshot) -> Changes:
        changed = _queued_since(session, site, before.last_outbox_id)
        open_after = _open_issue_keys(session, site)
        by_type = Counter(record_type for record_type, _subject in changed.values())
        return cls(
            records_changed=len(changed),
            records_by_type=dict(sorted(by_type.items())),
            subjects=tuple(sorted({subject for _type, subject in changed.values()})),
            issues_resolved=tuple(sorted(before.open_issues - open_after)),
            issues_opened=tuple(sorted(open_after - before.open_issues)),
        )

    def sentence(self) -> str:
        """``3 protocol records changed, 1 issue resolved.`` (new issues only when there are some)."""
        changed, resolved, opened = self.records_changed, self.issues_resolved, self.issues_opened
        parts = [
            f"{changed} protocol record{'s' if changed != 1 else ''} changed",
            f"{len(resolved)} issue{'s' if len(resolved) != 1 else ''} resolved",
        ]
        if opened:
            parts.append(f"{len(opened)} new issue{'s' if len(opened) != 1 else ''} opened")
        return ", ".join(parts) + "."


def _queued_since(session: Session, site: str, last_id: int) -> dict[str, tuple[str, str]]:
    """Record id -> (record type, subject) of what the fix queued, read from the outbox itself.

    The report says exactly what will be sent, no more (a record whose only
    change is the catalog stamp is not sent, see ``records.reconcile_records``)
    and no less.
    """
    rows = session.execute(
        sa.select(models.OutboxItem.record_id, models.OutboxItem.record_type, models.OutboxItem.subject_id)
        .where(models.OutboxItem.site == site, models.OutboxItem.id > last_id)
        .order_by(models.OutboxItem.id)
    )
    return {record_id: (record_type, subject_id) for record_id, record_type, subject_id in rows}


def _open_issue_keys(session: Session, site: str) -> set[str]:
    return set(
        session.scalars(
            sa.select(models.IssueRow.key).where(
                models.IssueRow.site == site, models.IssueRow.status == "open"
            )
        )
    )
