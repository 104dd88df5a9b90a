"""Transplant day 0: completed auto-HSCT only; different dates are an issue, not a guess."""

from __future__ import annotations

import pytest

from adapter.mapping.issues import IssueKind
from adapter.protocol import transplant

from .conftest import SUBJECT, d, fact


def hsct(at: str, status: str = "completed", ref: str | None = None):
    return fact("auto_hsct", at, status=status, ref=ref)


CASES = [
    # facts, day 0 (None: no record), issue expected
    ([], None, False),
    ([hsct("2025-04-01T09:00+08:00")], "2025-04-01", False),
    ([hsct("2025-04-01T23:30+08:00")], "2025-04-01", False),  # late evening local
    ([hsct("2025-04-01T16:30Z")], "2025-04-02", False),  # 00:30 local on 2 April
    ([hsct("2025-04-01T09:00+08:00", status="in-progress")], None, False),
    (
        [
            hsct("2025-04-01T09:00+08:00", ref="Procedure/a"),
            hsct("2025-04-01T15:00+08:00", ref="Procedure/b"),
        ],
        "2025-04-01",
        False,
    ),
    ([hsct("2025-04-01", status="in-progress"), hsct("2025-04-03")], "2025-04-03", False),
    ([hsct("2025-04-01", ref="Procedure/a"), hsct("2025-04-03", ref="Procedure/b")], None, True),
]


@pytest.mark.parametrize(("facts", "day0", "issue"), CASES)
def test_day0(facts, day0: str | None, issue: bool) -> None:
    record, issues = transplant.derive_transplant(facts, SUBJECT)
    if day0 is None:
        assert record is None
    else:
        assert record is not None
        assert (record.day0, record.day_from_transplant, record.transplant_type) == (d(day0), 0, "autologous")
    assert bool(issues) is issue


def test_same_date_duplicates_are_one_transplant_with_both_refs() -> None:
    facts = [
        hsct("2025-04-01T15:00+08:00", ref="Procedure/b"),
        hsct("2025-04-01T09:00+08:00", ref="Procedure/a"),
    ]
    record, _ = transplant.derive_transplant(facts, SUBJECT)
    assert record is not None
    assert record.evidence == ("Procedure/a", "Procedure/b")


def test_ambiguous_day0_issue() -> None:
    facts = [hsct("2025-04-03", ref="Procedure/b"), hsct("2025-04-01", ref="Procedure/a")]
    record, (issue,) = transplant.derive_transplant(facts, SUBJECT)
    assert record is None
    assert issue.kind is IssueKind.AMBIGUOUS_MATCH
    assert issue.scope == "subject:S-001:day0"
    assert (issue.site, issue.subject_id, issue.concept) == ("demo-east", "S-001", "auto_hsct")
    assert issue.source_refs == ("Procedure/a", "Procedure/b")
    assert issue.key == "demo-east|ambiguous_match|subject:S-001:day0"
    assert "2025" not in issue.detail  # no dates in the free text
