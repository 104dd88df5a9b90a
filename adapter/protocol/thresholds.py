"""Comparing a result with a protocol limit, including censored results.

Labs report values such as ``<0.1`` or ``>1000`` (FHIR Quantity.comparator,
https://hl7.org/fhir/R4/datatypes.html#Quantity).  Such a value is an
interval, and it decides a criterion only when the whole interval is on one
side of the limit; otherwise the honest answer is "unknown".

Equality is tested with a tiny relative tolerance so that unit conversion
(141.44 µmol/L ÷ 88.4 = 1.5999999999999999 mg/dL) does not turn a value that
is exactly on a limit into one just past it.
"""

from __future__ import annotations

import math
from enum import StrEnum

from adapter.protocol.records import CriterionStatus

_REL_TOL = 1e-9


class Bound(StrEnum):
    """How a value must relate to its limit."""

    AT_LEAST = ">="
    AT_MOST = "<="
    ABOVE = ">"


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=1e-12)


def judge(value: float, comparator: str | None, bound: Bound, limit: float) -> CriterionStatus:
    """MET, NOT_MET, or UNKNOWN when a censored value straddles the limit."""
    inf = math.inf
    intervals = {
        None: (value, False, value, False),
        "=": (value, False, value, False),
        "<": (-inf, True, value, True),
        "<=": (-inf, True, value, False),
        ">": (value, True, inf, True),
        ">=": (value, False, inf, True),
    }
    if comparator not in intervals:  # "ad" (sufficient to achieve) says nothing usable
        return CriterionStatus.UNKNOWN
    lo, lo_open, hi, hi_open = intervals[comparator]
    if bound is Bound.AT_MOST:
        met = hi < limit or _same(hi, limit)
        not_met = (lo > limit and not _same(lo, limit)) or (_same(lo, limit) and lo_open)
    elif bound is Bound.AT_LEAST:
        met = lo > limit or _same(lo, limit)
        not_met = (hi < limit and not _same(hi, limit)) or (_same(hi, limit) and hi_open)
    else:  # ABOVE
        met = (lo > limit and not _same(lo, limit)) or (_same(lo, limit) and lo_open)
        not_met = hi < limit or _same(hi, limit)
    if met:
        return CriterionStatus.MET
    if not_met:
        return CriterionStatus.NOT_MET
    return CriterionStatus.UNKNOWN
