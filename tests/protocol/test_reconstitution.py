"""Reconstitution: first date after day 0 with WBC >= 3 and PLT >= 50 (same local day by default)."""

from __future__ import annotations

import pytest

from adapter.protocol import reconstitution
from adapter.protocol.rules import ProtocolRules

from .conftest import SUBJECT, d, fact, tuned

DAY0 = d("2025-04-01")


def wbc(at: str, value: float, **kw):
    return fact("wbc", at, value, **kw)


def plt(at: str, value: float, **kw):
    return fact("platelets", at, value, **kw)


CASES = [
    # id, facts, expected date (None: no record), wbc, plt
    (
        "exact thresholds",
        [wbc("2025-04-15T08:00+08:00", 3.0), plt("2025-04-15T08:00+08:00", 50.0)],
        "2025-04-15",
        3.0,
        50.0,
    ),
    (
        "wbc just below",
        [wbc("2025-04-15T08:00+08:00", 2.99), plt("2025-04-15T08:00+08:00", 80.0)],
        None,
        None,
        None,
    ),
    (
        "plt just below",
        [wbc("2025-04-15T08:00+08:00", 4.0), plt("2025-04-15T08:00+08:00", 49.9)],
        None,
        None,
        None,
    ),
    (
        "different days",
        [wbc("2025-04-15T08:00+08:00", 4.0), plt("2025-04-16T08:00+08:00", 60.0)],
        None,
        None,
        None,
    ),
    (
        "same local day across UTC midnight",
        [wbc("2025-04-15T23:30+08:00", 4.0), plt("2025-04-15T01:00Z", 60.0)],  # 09:00 local
        "2025-04-15",
        4.0,
        60.0,
    ),
    (
        "UTC date differs from local",
        [wbc("2025-04-15T16:30Z", 4.0), plt("2025-04-15T08:00+08:00", 60.0)],  # wbc: 00:30 local on the 16th
        None,
        None,
        None,
    ),
    (
        "on day 0 does not count",
        [wbc("2025-04-01T20:00+08:00", 5.0), plt("2025-04-01T20:00+08:00", 90.0)],
        None,
        None,
        None,
    ),
    (
        "first qualifying day wins",
        [
            wbc("2025-04-20T08:00+08:00", 5.0),
            plt("2025-04-20T08:00+08:00", 90.0),
            wbc("2025-04-18T08:00+08:00", 3.5),
            plt("2025-04-18T08:00+08:00", 55.0),
            wbc("2025-04-17T08:00+08:00", 3.5),
            plt("2025-04-17T08:00+08:00", 45.0),
        ],
        "2025-04-18",
        3.5,
        55.0,
    ),
    (
        "any qualifying result of the day",
        [
            wbc("2025-04-15T08:00+08:00", 2.0),
            wbc("2025-04-15T18:00+08:00", 3.2),
            plt("2025-04-15T08:00+08:00", 51.0),
        ],
        "2025-04-15",
        3.2,
        51.0,
    ),
    (
        "censored high platelets",
        [wbc("2025-04-15T08:00+08:00", 3.1), plt("2025-04-15T08:00+08:00", 50.0, comparator=">")],
        "2025-04-15",
        3.1,
        50.0,
    ),
]


@pytest.mark.parametrize(
    ("facts", "date", "wbc_value", "plt_value"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_reconstitution(rules: ProtocolRules, facts, date: str | None, wbc_value, plt_value) -> None:
    record = reconstitution.derive_reconstitution(facts, SUBJECT, rules.reconstitution, DAY0)
    if date is None:
        assert record is None
        return
    assert record is not None
    assert (record.date, record.wbc, record.plt) == (d(date), wbc_value, plt_value)
    assert record.day_from_transplant == (d(date) - DAY0).days
    assert record.evidence[0].startswith("Observation/wbc-")
    assert record.evidence[1].startswith("Observation/platelets-")


def test_no_day0_no_record(rules: ProtocolRules) -> None:
    facts = [wbc("2025-04-15", 5.0), plt("2025-04-15", 90.0)]
    assert reconstitution.derive_reconstitution(facts, SUBJECT, rules.reconstitution, None) is None


def test_days_apart_when_configured_takes_the_later_date(rules: ProtocolRules) -> None:
    relaxed = tuned(rules, "reconstitution", max_days_apart=1)
    facts = [wbc("2025-04-15T08:00+08:00", 4.0), plt("2025-04-16T08:00+08:00", 60.0), plt("2025-04-18", 70.0)]
    record = reconstitution.derive_reconstitution(facts, SUBJECT, relaxed.reconstitution, DAY0)
    assert record is not None and (record.date, record.plt) == (d("2025-04-16"), 60.0)
    far = [wbc("2025-04-15T08:00+08:00", 4.0), plt("2025-04-17T08:00+08:00", 60.0)]
    assert reconstitution.derive_reconstitution(far, SUBJECT, relaxed.reconstitution, DAY0) is None
