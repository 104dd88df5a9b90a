"""All protocol records of one subject from that subject's facts.

This is the only entry point the sync needs: facts in, records and issues
out, no I/O.  Deriving is always safe to repeat: the facts are put in one
canonical order first, every record id comes from (study, subject, type,
natural key), and records and issues are returned sorted, so the same facts in
any order give byte-identical records and the store can diff by id.

Order of the steps follows their dependencies: day 0 first (phases and
offsets count from it), reconstitution (maintenance is flagged against it),
cycles, then the collection (measured from the pre-transplant cycle).

A dose the site recorded as not given is a fact (the console shows it) but
never exposure: it is left out before any rule sees the facts, so cycles,
the first-infusion anchor and everything measured from them come out
exactly as if it were absent.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from adapter.mapping.facts import Fact
from adapter.mapping.issues import MappingIssue
from adapter.protocol import (
    collection,
    cycles,
    eligibility,
    mrd,
    reconstitution,
    timeline,
    transplant,
)
from adapter.protocol.context import SubjectContext
from adapter.protocol.records import AnyRecord
from adapter.protocol.rules import ProtocolRules

__all__ = ["Derivation", "SubjectContext", "derive_subject"]


class Derivation(BaseModel):
    """The records and issues derived for one subject, in a stable order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    records: tuple[AnyRecord, ...]
    issues: tuple[MappingIssue, ...]


def derive_subject(facts: Sequence[Fact], subject: SubjectContext, rules: ProtocolRules) -> Derivation:
    """Derive every protocol record of one subject.

    Raises ValueError when a fact belongs to another subject or site, or the
    rules were loaded for another site: mixing subjects is a caller bug that
    would otherwise produce plausible but wrong records.
    """
    if rules.site is not None and rules.site != subject.site:
        raise ValueError(
            f"rules loaded for site {rules.site!r} cannot derive a subject of site {subject.site!r}"
        )
    foreign = sum((f.subject_id, f.site) != (subject.subject_id, subject.site) for f in facts)
    if foreign:
        raise ValueError(f"{foreign} fact(s) are not of subject {subject.subject_id!r} at {subject.site!r}")
    ordered = timeline.canonical(fact for fact in facts if fact.happened)

    day0_record, issues = transplant.derive_transplant(ordered, subject)
    day0 = day0_record.day0 if day0_record is not None else None
    recon = reconstitution.derive_reconstitution(ordered, subject, rules.reconstitution, day0)
    cycle_records = cycles.cycle_records(
        cycles.group_cycles(ordered, rules.cycles),
        subject,
        rules.cycles,
        day0,
        recon.date if recon is not None else None,
    )
    collected = collection.derive_collection(ordered, subject, rules.collection, cycle_records, day0)

    derived: list[AnyRecord] = [
        eligibility.assess_eligibility(ordered, subject, rules.eligibility, day0),
        *cycle_records,
        *mrd.derive_mrd(ordered, subject, day0),
    ]
    derived.extend(r for r in (day0_record, recon, collected) if r is not None)
    return Derivation(
        records=tuple(sorted(derived, key=lambda r: (r.record_type.value, r.record_id))),
        issues=tuple(sorted(issues, key=lambda i: i.key)),
    )
