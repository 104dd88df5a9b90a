"""What the data manager's fixes are called, what they return and how they refuse.

Every fix (``fixes``, ``undoing``) writes an audit entry under one of these
action names and hands back a ``FixResult``; the console and the CLI show
that result and catch ``FixRefused``.  Keeping the names in one place lets
the audit page tell which entries can be undone without knowing how.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapter import actors, errors

MAP_CODE = "mapping.code"
MAP_UNIT = "mapping.unit"
IGNORE_CODE = "mapping.ignore_code"
IGNORE_ISSUE = "issue.ignore"  # the same action name the CLI's `issues ignore` writes
UNDO = "undo"

MAPPING_ACTIONS = {MAP_CODE: "codes", MAP_UNIT: "units", IGNORE_CODE: "ignored_codes"}
UNDOABLE = (*MAPPING_ACTIONS, IGNORE_ISSUE)


class FixRefused(errors.AdapterError):
    """The fix cannot be made as asked; the message says why and what to do instead."""

    exit_code = errors.EXIT_USAGE


class SiteBusy(FixRefused):
    """The site is being synced right now: nothing was changed, and the same fix may be tried again."""


@dataclass(frozen=True)
class FixResult:
    """What a fix did, for the console's result page and the CLI's report."""

    audit_id: int
    action: str
    site: str | None
    summary: str
    records_changed: int = 0
    records_by_type: dict[str, int] = field(default_factory=dict)
    subjects: tuple[str, ...] = ()
    issues_resolved: tuple[str, ...] = ()
    issues_opened: tuple[str, ...] = ()
    file: str | None = None  # the site fix file the fix wrote, so a person knows where it went


def check_actor(actor: str) -> None:
    """Refuse an actor outside the one rule for names (``adapter.actors``) before anything is written.

    The CLI and the console check names already; this is the last line, so
    no caller can write a line break into the site's file or the audit log.
    """
    if not actors.is_actor(actor):
        raise FixRefused(f"actor {actor!r} is not a valid name ({actors.RULE}); nothing was changed")
