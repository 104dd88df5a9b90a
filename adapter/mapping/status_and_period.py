"""Status and time of a mapped event, checked the same way for every resource type.

A result, an administration and a procedure each say whether they count
(their ``status``) and when they happened (a moment, or a period).  Each
resource type has its own usable statuses and its own words in the issue,
but the checks are the same: a status outside the usable ones is a
``not_final`` issue, a time coarser than a day or none at all is a
``missing_time`` issue, and a period ending before it starts keeps only its
start.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from adapter.mapping import catalog as catalog_mod
from adapter.mapping import times
from adapter.mapping.context import SiteContext, Stop, issue
from adapter.mapping.issues import IssueKind


def usable_status(
    status: Any,
    usable: Collection[str],
    concept: catalog_mod.Concept,
    ref: str,
    subject_id: str,
    ctx: SiteContext,
    *,
    record: str,
    rule: str,
) -> str:
    """``status`` as text when it is usable; else a ``not_final`` issue.

    The issue reads "<ref>: <concept> <record> has status '<status>'; <rule>",
    e.g. record "result", rule "only final, amended or corrected results are used".
    """
    text = str(status)
    if text not in usable:
        raise Stop(
            issue(
                ctx,
                IssueKind.NOT_FINAL,
                ref,
                f"{ref}: {concept.id} {record} has status {text!r}; {rule}",
                subject_id=subject_id,
                concept=concept.id,
            )
        )
    return text


def period(
    start: Any,
    end: Any,
    concept: catalog_mod.Concept,
    ref: str,
    subject_id: str,
    ctx: SiteContext,
    *,
    missing: str,
) -> tuple[Any, Any]:
    """(start, end or None) as aware datetimes; a missing start ends in ``missing``.

    Both ends are read before the start is required, so an imprecise end is
    reported as such even when the start is missing.  An end before the
    start is dropped.
    """
    start_time = _aware(start, concept, ref, subject_id, ctx)
    end_time = _aware(end, concept, ref, subject_id, ctx)
    if start_time is None:
        raise Stop(
            issue(
                ctx,
                IssueKind.MISSING_TIME,
                ref,
                f"{ref}: {concept.id} {missing}",
                subject_id=subject_id,
                concept=concept.id,
            )
        )
    return start_time, end_time if end_time is not None and end_time >= start_time else None


def _aware(value: Any, concept: catalog_mod.Concept, ref: str, subject_id: str, ctx: SiteContext) -> Any:
    try:
        return times.to_aware(value, ctx.timezone)
    except times.ImpreciseTime as exc:
        raise Stop(
            issue(
                ctx, IssueKind.MISSING_TIME, ref, f"{ref}: {exc}", subject_id=subject_id, concept=concept.id
            )
        ) from None
