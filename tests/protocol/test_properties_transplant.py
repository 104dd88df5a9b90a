"""Properties of transplant day 0 over generated procedure lists (hypothesis).

The rule (transplant.py, docs/design.md §4): day 0 is the site-local date of
the completed autologous HSCT.  Only ``completed`` counts; completed
procedures on one local date are one transplant; completed procedures on two
or more local dates are an ``ambiguous_match`` issue and no day 0, never a
guess.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from adapter.mapping.facts import Fact
from adapter.mapping.issues import IssueKind
from adapter.protocol import transplant

from .conftest import SUBJECT, fact
from .strategies import (
    BUDGET,
    OFFSETS,
    PROCEDURE_STATUSES,
    TIMELINE_BUDGET,
    moments,
    procedures,
    renamed,
    rewritten,
)

FIRST, LAST = dt.date(2025, 3, 25), dt.date(2025, 4, 8)
NOT_COMPLETED = tuple(s for s in PROCEDURE_STATUSES if s != "completed")


def hscts(max_size: int = 5, statuses: tuple[str, ...] = PROCEDURE_STATUSES) -> st.SearchStrategy[list[Fact]]:
    return procedures("auto_hsct", FIRST, LAST, prefix="hsct", max_size=max_size, statuses=statuses)


def derived(facts: list[Fact]) -> tuple[str | None, tuple[str, ...]]:
    """The record and issues as JSON, for comparing whole results."""
    record, issues = transplant.derive_transplant(facts, SUBJECT)
    return (
        None if record is None else record.model_dump_json(),
        tuple(issue.model_dump_json() for issue in issues),
    )


@TIMELINE_BUDGET
@given(hscts())
def test_day0_is_the_single_completed_local_date_else_an_issue(facts: list[Fact]) -> None:
    completed = [f for f in facts if f.status == "completed"]
    dates = {f.local_date for f in completed}
    record, issues = transplant.derive_transplant(facts, SUBJECT)
    if not dates:
        assert (record, issues) == (None, ())
    elif len(dates) == 1:
        assert record is not None and issues == ()
        assert record.day0 == dates.pop()
        assert record.day_from_transplant == 0
        assert record.evidence == tuple(sorted(f.source_ref for f in completed))
    else:
        assert record is None
        (issue,) = issues
        assert issue.kind is IssueKind.AMBIGUOUS_MATCH
        assert issue.scope == f"subject:{SUBJECT.subject_id}:day0"
        assert issue.source_refs == tuple(sorted(f.source_ref for f in completed))


@TIMELINE_BUDGET
@given(hscts(), hscts(statuses=NOT_COMPLETED))
def test_procedures_not_completed_never_count(facts: list[Fact], others: list[Fact]) -> None:
    """In progress, stopped, not done, entered in error...: none of them moves or blocks day 0."""
    assert derived(facts + renamed(others, "other")) == derived(facts)


@TIMELINE_BUDGET
@given(st.data())
def test_order_duplicates_and_written_offset_do_not_matter(data: st.DataObject) -> None:
    facts = data.draw(hscts())
    expected = derived(facts)
    assert derived(data.draw(st.permutations(facts))) == expected
    if facts:
        assert derived(facts + data.draw(st.lists(st.sampled_from(facts), max_size=3))) == expected
    assert derived(rewritten(facts, data.draw(st.sampled_from(OFFSETS)))) == expected


@TIMELINE_BUDGET
@given(hscts(statuses=("completed",), max_size=3), st.data())
def test_another_completed_transplant_same_day_joins_other_day_is_ambiguous(
    facts: list[Fact], data: st.DataObject
) -> None:
    """Adding a completed HSCT never silently replaces day 0."""
    record, _ = transplant.derive_transplant(facts, SUBJECT)
    if record is None:
        return
    at = data.draw(moments(FIRST, LAST))
    extra = fact("auto_hsct", at, ref="Procedure/extra")
    after, issues = transplant.derive_transplant([*facts, extra], SUBJECT)
    if extra.local_date == record.day0:
        assert after is not None and issues == ()
        assert after.day0 == record.day0
        assert after.record_id == record.record_id
        assert set(after.evidence) == {*record.evidence, "Procedure/extra"}
    else:
        assert after is None
        assert [i.kind for i in issues] == [IssueKind.AMBIGUOUS_MATCH]


@BUDGET
@given(st.dates(FIRST, LAST), st.dates(FIRST, LAST))
def test_a_corrected_day0_keeps_the_record_id(first: dt.date, second: dt.date) -> None:
    """The natural key is "day0", not the date, so a corrected date replaces the same record."""
    one, _ = transplant.derive_transplant([fact("auto_hsct", first.isoformat(), ref="Procedure/a")], SUBJECT)
    two, _ = transplant.derive_transplant([fact("auto_hsct", second.isoformat(), ref="Procedure/a")], SUBJECT)
    assert one is not None and two is not None
    assert one.record_id == two.record_id
