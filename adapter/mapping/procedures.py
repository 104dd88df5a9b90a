"""Procedures: an apheresis, a transplant or an echocardiogram becomes one dated fact.

A procedure the site recorded as ``not-done`` (a planned transplant that did
not happen) is no event: it becomes no fact and raises no issue, and the
subject's history shows it (``not_counted.py``).
"""

from __future__ import annotations

from typing import Any

from adapter.mapping.context import MappingResult, SiteContext, fact
from adapter.mapping.not_counted import NOT_DONE, NotCounted
from adapter.mapping.resolve import resolve_concept, subject
from adapter.mapping.status_and_period import is_withdrawn, period, usable_status, withdrawn

# https://hl7.org/fhir/R4/valueset-event-status.html
USABLE_PROCEDURE = {"completed", "in-progress"}


def map_procedure(proc: Any, ref: str, source_version: str, ctx: SiteContext) -> MappingResult:
    subject_id = subject(proc, "subject", ref, ctx)
    if is_withdrawn(proc.status):
        return withdrawn(proc.code, ref, subject_id, ctx)
    concept = resolve_concept(proc.code, ref, subject_id, ctx)
    if concept is None:
        return MappingResult(ignored=True)
    if str(proc.status) == NOT_DONE:
        return MappingResult(not_counted=NotCounted.NOT_DONE)
    status = usable_status(
        proc.status,
        USABLE_PROCEDURE,
        concept,
        ref,
        subject_id,
        ctx,
        record="procedure",
        rule="only completed or in-progress procedures are used",
    )
    performed = proc.performedPeriod
    start, end = period(
        proc.performedDateTime or (performed.start if performed else None),
        performed.end if performed else None,
        concept,
        ref,
        subject_id,
        ctx,
        missing="procedure has no performed time",
    )
    return MappingResult(
        facts=[
            fact(
                ctx,
                subject_id=subject_id,
                concept=concept,
                ref=ref,
                source_version=source_version,
                status=status,
                start=start,
                end=end,
            )
        ]
    )
