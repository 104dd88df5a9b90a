"""MRD follow-up results (flow cytometry, IgH NGS) passed through as records.

The protocol monitors MRD after the transplant, so only results dated after
day 0 (strictly: a day-0 sample is pre-infusion) become records; without a day
0 there is no follow-up yet and nothing is emitted.  Values are not
interpreted (no "negative" threshold): the trial repository receives the
result, its comparator and its offset from day 0.  A result the lab reported
as a word ("negative", "not detected") has no value and its ``result`` set.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from adapter.mapping.facts import Fact
from adapter.protocol import records, timeline
from adapter.protocol.context import SubjectContext

METHODS: dict[str, Literal["flow_cytometry", "igh_ngs"]] = {
    "mrd_flow": "flow_cytometry",
    "mrd_ngs": "igh_ngs",
}


def derive_mrd(
    facts: Sequence[Fact], subject: SubjectContext, day0: dt.date | None
) -> tuple[records.MrdResult, ...]:
    """One MrdResult per MRD fact after day 0.

    Same-day results of one method are numbered 1, 2, ... in canonical order
    (time, then source reference), which keeps the natural key
    ``{method}:{date}:{n}`` stable whatever order the facts arrive in.
    """
    if day0 is None:
        return ()
    seen: Counter[tuple[str, dt.date]] = Counter()
    results = []
    for fact in timeline.of_concept(facts, *METHODS):
        if fact.local_date <= day0:
            continue
        method = METHODS[fact.concept]
        seen[(method, fact.local_date)] += 1
        natural_key = f"{method}:{fact.local_date.isoformat()}:{seen[(method, fact.local_date)]}"
        results.append(
            records.MrdResult(
                **subject.record_fields(
                    records.RecordType.MRD,
                    natural_key,
                    on=fact.local_date,
                    day0=day0,
                    evidence=(fact.source_ref,),
                ),
                method=method,
                date=fact.local_date,
                value=fact.value,
                unit=fact.unit,
                comparator=fact.comparator,
                result=fact.attributes.get("result"),
            )
        )
    return tuple(results)
