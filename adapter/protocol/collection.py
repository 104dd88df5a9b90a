"""Stem-cell collection (apheresis) and its timing after blinatumomab.

The protocol collects stem cells "1 week after blinatumomab"; the first
apheresis is measured from the end of the cycle that preceded it, and flagged
``collection_outside_window`` outside the configured window (default 3-14
days).  The preceding cycle is the last non-maintenance cycle that started on
or before the first apheresis: before the transplant is recorded cycles are
still unphased, and the flag is most useful exactly then.  With no such cycle
the collection is flagged ``no_pre_transplant_cycle`` instead.

An apheresis counts when the Procedure is completed or in progress (cells are
being collected that day); the mapping stage drops the other statuses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from adapter.mapping.facts import Fact
from adapter.protocol import records, timeline
from adapter.protocol.context import SubjectContext
from adapter.protocol.rules import CollectionRules

CONCEPT = "apheresis"
NATURAL_KEY = "collection"
PERFORMED = frozenset({"completed", "in-progress"})


def derive_collection(
    facts: Sequence[Fact],
    subject: SubjectContext,
    rules: CollectionRules,
    cycles: Sequence[records.TreatmentCycle],
    day0: dt.date | None,
) -> records.StemCellCollection | None:
    """The StemCellCollection record, or None when no apheresis was performed."""
    performed = [f for f in timeline.of_concept(facts, CONCEPT) if f.status in PERFORMED]
    if not performed:
        return None
    dates = tuple(sorted({f.local_date for f in performed}))
    first = dates[0]
    preceding = [c for c in cycles if c.phase != records.CyclePhase.MAINTENANCE and c.start <= first]
    flags = []
    days_after: int | None = None
    if preceding:
        days_after = (first - max(preceding, key=lambda c: c.start).end).days
        if not rules.window_min_days <= days_after <= rules.window_max_days:
            flags.append("collection_outside_window")
    else:
        flags.append("no_pre_transplant_cycle")
    return records.StemCellCollection(
        **subject.record_fields(
            records.RecordType.COLLECTION,
            NATURAL_KEY,
            on=first,
            day0=day0,
            evidence=tuple(sorted({f.source_ref for f in performed})),
        ),
        dates=dates,
        first_date=first,
        days_after_pre_transplant_cycle=days_after,
        flags=tuple(flags),
    )
