"""Transplant day 0: the date of the completed autologous HSCT.

Every post-transplant rule counts from day 0, so a wrong day 0 would shift
phases, reconstitution and MRD offsets at once.  Two completed transplants on
different dates is therefore an ``ambiguous_match`` issue for a data manager,
never a guess; the same procedure recorded twice on one date is one transplant.
Only ``completed`` counts: an ``in-progress`` Procedure may still be stopped.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapter.mapping.facts import Fact
from adapter.mapping.issues import IssueKind, MappingIssue
from adapter.protocol import records, timeline
from adapter.protocol.context import SubjectContext

CONCEPT = "auto_hsct"
NATURAL_KEY = "day0"


def derive_transplant(
    facts: Sequence[Fact], subject: SubjectContext
) -> tuple[records.Transplant | None, tuple[MappingIssue, ...]]:
    """The Transplant record, or none plus an issue when day 0 is ambiguous."""
    completed = [f for f in timeline.of_concept(facts, CONCEPT) if f.status == "completed"]
    if not completed:
        return None, ()
    dates = sorted({f.local_date for f in completed})
    refs = tuple(sorted({f.source_ref for f in completed}))
    if len(dates) > 1:
        issue = MappingIssue(
            site=subject.site,
            kind=IssueKind.AMBIGUOUS_MATCH,
            scope=f"subject:{subject.subject_id}:day0",
            subject_id=subject.subject_id,
            concept=CONCEPT,
            detail=(
                f"{len(dates)} completed autologous HSCT procedures on different dates; "
                "day 0 is not derived until a data manager resolves which one is the transplant"
            ),
            source_refs=refs,
        )
        return None, (issue,)
    day0 = dates[0]
    record = records.Transplant(
        **subject.record_fields(
            records.RecordType.TRANSPLANT, NATURAL_KEY, on=day0, day0=day0, evidence=refs
        ),
        day0=day0,
    )
    return record, ()
