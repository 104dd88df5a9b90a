"""Procedures: an apheresis, a transplant or an echocardiogram becomes one dated fact."""

from __future__ import annotations

from typing import Any

from adapter.mapping.context import MappingResult, SiteContext, fact
from adapter.mapping.resolve import resolve_concept, subject
from adapter.mapping.status_and_period import period, usable_status

# https://hl7.org/fhir/R4/valueset-event-status.html
USABLE_PROCEDURE = {"completed", "in-progress"}


def map_procedure(proc: Any, ref: str, source_version: str, ctx: SiteContext) -> MappingResult:
    subject_id = subject(proc, "subject", ref, ctx)
    concept = resolve_concept(proc.code, ref, subject_id, ctx)
    if concept is None:
        return MappingResult(ignored=True)
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
