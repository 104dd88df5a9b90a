"""Blinatumomab cycles from individual administrations.

Blinatumomab runs as a continuous infusion with the bag changed every 1-4
days, so a cycle is many MedicationAdministrations.  They are grouped by
time: sorted by start, a gap between the running end of the cycle and the next
start LONGER than ``gap_days`` starts a new cycle (exactly ``gap_days`` does
not).  Gaps are measured between instants, not dates, so "7 days" means 168
hours whatever the time zone.

An administration without an end (a point or daily-charted administration)
stands for one day of infusion from its charted time: we know the site-local
date but not the site's zone offset, so the day is taken as the 24 hours from
the charted instant.  That window may reach into the next local day, which is
why a cycle's infused days are capped at its calendar days: a cycle cannot
infuse longer than the days it spans.

A dose the site recorded as not given (status ``not-done``) is no
infusion: it never joins, starts or lengthens a cycle.

Dose: ``total_dose_mcg`` is the sum only when every administration in the
cycle has a dose; otherwise it is ``None`` and the cycle is flagged
``dose_incomplete``, because a partial sum in a "total" field would be read as
the total.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from adapter.mapping.facts import Fact
from adapter.protocol import records, timeline
from adapter.protocol.context import SubjectContext
from adapter.protocol.rules import CycleRules

CONCEPT = "blinatumomab"
ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Cycle:
    """One run of administrations with no gap longer than the cycle gap."""

    administrations: tuple[Fact, ...]
    start: dt.date  # local date of the first administration
    end: dt.date  # latest local (end) date of any administration
    infused: dt.timedelta  # union of infusion intervals, capped at calendar days
    interrupted: bool  # some internal gap was longer than interruption_days

    @property
    def calendar_days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def infused_days(self) -> float:
        return round(self.infused / ONE_DAY, 2)

    @property
    def total_dose_mcg(self) -> float | None:
        doses = [fact.value for fact in self.administrations]
        if any(dose is None for dose in doses):
            return None
        # fsum is exactly rounded, hence independent of the summation order.
        return round(math.fsum(dose for dose in doses if dose is not None), 6)


def infusion_interval(fact: Fact) -> tuple[dt.datetime, dt.datetime]:
    """The instants an administration covers (a point one covers 24 hours)."""
    start = fact.effective_start
    end = fact.effective_end if fact.effective_end is not None else start + ONE_DAY
    return start, max(start, end)


def group_cycles(facts: Sequence[Fact], rules: CycleRules) -> tuple[Cycle, ...]:
    """The subject's blinatumomab cycles in chronological order."""
    administrations = [fact for fact in timeline.of_concept(facts, CONCEPT) if fact.happened]
    spans = sorted(
        ((*infusion_interval(fact), index) for index, fact in enumerate(administrations)),
    )
    gap = dt.timedelta(days=rules.gap_days)
    interruption = dt.timedelta(days=rules.interruption_days)
    groups: list[list[Fact]] = []
    covered: list[dt.timedelta] = []
    interrupted: list[bool] = []
    running_end: dt.datetime | None = None
    for start, end, index in spans:
        fact = administrations[index]
        if running_end is None or start - running_end > gap:
            groups.append([fact])
            covered.append(end - start)
            interrupted.append(False)
            running_end = end
            continue
        groups[-1].append(fact)
        if start - running_end > interruption:
            interrupted[-1] = True
        if end > running_end:
            covered[-1] += end - max(start, running_end)
            running_end = end
    return tuple(_cycle(group, union, broken) for group, union, broken in zip(groups, covered, interrupted))


def _cycle(group: list[Fact], union: dt.timedelta, interrupted: bool) -> Cycle:
    start = min(fact.local_date for fact in group)
    end = max(fact.local_end_date or fact.local_date for fact in group)
    end = max(start, end)
    calendar = dt.timedelta(days=(end - start).days + 1)
    return Cycle(
        administrations=timeline.canonical(group),
        start=start,
        end=end,
        infused=min(union, calendar),
        interrupted=interrupted,
    )


def phase_of(cycle: Cycle, day0: dt.date | None) -> records.CyclePhase:
    """Pre-transplant if it starts before day 0, maintenance from day 0 on."""
    if day0 is None:
        return records.CyclePhase.UNPHASED
    if cycle.start < day0:
        return records.CyclePhase.PRE_TRANSPLANT
    return records.CyclePhase.MAINTENANCE


def cycle_records(
    cycles: Sequence[Cycle],
    subject: SubjectContext,
    rules: CycleRules,
    day0: dt.date | None,
    reconstitution_date: dt.date | None,
) -> tuple[records.TreatmentCycle, ...]:
    """Number the cycles within their phase and attach the protocol flags."""
    numbers: dict[records.CyclePhase, int] = {}
    result = []
    for cycle in sorted(cycles, key=lambda c: (c.start, c.end)):
        phase = phase_of(cycle, day0)
        numbers[phase] = numbers.get(phase, 0) + 1
        number = numbers[phase]
        result.append(
            records.TreatmentCycle(
                **subject.record_fields(
                    records.RecordType.CYCLE,
                    f"{phase.value}:{number}",
                    on=cycle.start,
                    day0=day0,
                    evidence=tuple(sorted({fact.source_ref for fact in cycle.administrations})),
                ),
                phase=phase,
                number=number,
                start=cycle.start,
                end=cycle.end,
                infused_days=cycle.infused_days,
                calendar_days=cycle.calendar_days,
                administrations=len(cycle.administrations),
                total_dose_mcg=cycle.total_dose_mcg,
                flags=_flags(cycle, phase, number, rules, day0, reconstitution_date),
            )
        )
    return tuple(result)


def _flags(
    cycle: Cycle,
    phase: records.CyclePhase,
    number: int,
    rules: CycleRules,
    day0: dt.date | None,
    reconstitution_date: dt.date | None,
) -> tuple[str, ...]:
    flags = set()
    if any(fact.value is None for fact in cycle.administrations):
        flags.add("dose_incomplete")
    if cycle.interrupted:
        flags.add("interrupted")
    if cycle.infused_days > rules.max_infused_days:  # as shown in the record
        flags.add("over_28_infused_days")
    if phase is records.CyclePhase.PRE_TRANSPLANT and day0 is not None and cycle.end >= day0:
        flags.add("spans_transplant")
    if phase is records.CyclePhase.MAINTENANCE:
        if number > rules.maintenance_cycles:
            flags.add("fifth_maintenance_cycle")
        if reconstitution_date is None or cycle.start < reconstitution_date:
            flags.add("maintenance_before_reconstitution")
    return tuple(sorted(flags))
