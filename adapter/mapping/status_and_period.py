"""Status and time of a mapped event, checked the same way for every resource type.

A result, an administration and a procedure each say whether they count
(their ``status``) and when they happened (a moment, or a period).  Each
resource type has its own usable statuses and its own words in the issue,
but the checks are the same: a status outside the usable ones is a
``not_final`` issue, a time coarser than a day or none at all is a
``missing_time`` issue, and a period ending before it starts keeps only its
start.  Two statuses are no issue because nothing about them is undecided
(``not_counted.py``): ``entered-in-error`` (``withdrawn`` here) and a
``not-done`` administration or procedure (in their mappers).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from adapter.mapping import catalog as catalog_mod
from adapter.mapping import times
from adapter.mapping.context import MappingResult, SiteContext, Stop, issue
from adapter.mapping.issues import IssueKind
from adapter.mapping.not_counted import ENTERED_IN_ERROR, NotCounted
from adapter.mapping.resolve import resolve_concept


def is_withdrawn(status: Any) -> bool:
    """Whether the site marked the resource entered-in-error (its own correction)."""
    return str(status) == ENTERED_IN_ERROR


def withdrawn(codeable: Any, ref: str, subject_id: str, ctx: SiteContext) -> MappingResult:
    """An entered-in-error resource: no fact, no issue, whatever else is wrong with it.

    Its facts, if it had any before, are taken back by the sync like those of
    any changed resource.  Of a protocol concept it is ``withdrawn`` (the
    subject's history lists it); with a code the protocol does not use it is
    ignored, and an unknown code raises nothing: nobody needs to map a code
    for a result the site withdrew.  A standard code outside the protocol
    stays ``outside`` (``resolve_concept`` raises it).
    """
    try:
        concept = resolve_concept(codeable, ref, subject_id, ctx)
    except Stop:
        concept = None
    if concept is None:
        return MappingResult(ignored=True)
    return MappingResult(not_counted=NotCounted.WITHDRAWN)


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
