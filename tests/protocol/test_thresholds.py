"""Comparing values with limits, including censored (``<``/``>``) values."""

from __future__ import annotations

import pytest

from adapter.protocol.records import CriterionStatus as S
from adapter.protocol.thresholds import Bound, judge

CASES = [
    # value, comparator, bound, limit, expected
    (1.6, None, Bound.AT_MOST, 1.6, S.MET),
    (141.44 / 88.4, None, Bound.AT_MOST, 1.6, S.MET),  # 1.5999999999999999 after conversion
    (1.6000001, None, Bound.AT_MOST, 1.6, S.NOT_MET),
    (50.0, None, Bound.AT_LEAST, 50.0, S.MET),
    (49.99, None, Bound.AT_LEAST, 50.0, S.NOT_MET),
    (91.0, None, Bound.ABOVE, 91.0, S.NOT_MET),
    (91.01, None, Bound.ABOVE, 91.0, S.MET),
    (1.6, "=", Bound.AT_MOST, 1.6, S.MET),
    # "<v": the true value is below v
    (0.5, "<", Bound.AT_MOST, 1.6, S.MET),
    (1.6, "<", Bound.AT_MOST, 1.6, S.MET),
    (3.0, "<", Bound.AT_MOST, 2.0, S.UNKNOWN),
    (50.0, "<", Bound.AT_LEAST, 50.0, S.NOT_MET),
    (50.0, "<=", Bound.AT_LEAST, 50.0, S.UNKNOWN),
    (91.0, "<", Bound.ABOVE, 91.0, S.NOT_MET),
    (95.0, "<", Bound.ABOVE, 91.0, S.UNKNOWN),
    # ">v": the true value is above v
    (2.0, ">", Bound.AT_MOST, 2.0, S.NOT_MET),
    (2.0, ">=", Bound.AT_MOST, 2.0, S.UNKNOWN),
    (1.0, ">", Bound.AT_MOST, 2.0, S.UNKNOWN),
    (91.0, ">", Bound.ABOVE, 91.0, S.MET),
    (91.0, ">=", Bound.ABOVE, 91.0, S.UNKNOWN),
    (1000.0, ">", Bound.AT_LEAST, 50.0, S.MET),
    (10.0, "ad", Bound.AT_MOST, 50.0, S.UNKNOWN),
]


@pytest.mark.parametrize(("value", "comparator", "bound", "limit", "expected"), CASES)
def test_judge(value: float, comparator: str | None, bound: Bound, limit: float, expected: S) -> None:
    assert judge(value, comparator, bound, limit) is expected
