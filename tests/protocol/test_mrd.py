"""MRD follow-up results after day 0 pass through with a stable per-day number."""

from __future__ import annotations

from adapter.protocol import mrd
from adapter.protocol.records import record_id

from .conftest import SUBJECT, d, fact

DAY0 = d("2025-04-01")


def test_only_after_day0_and_never_without_it() -> None:
    facts = [
        fact("mrd_flow", "2025-03-20", 0.05),
        fact("mrd_flow", "2025-04-01T20:00+08:00", 0.01),  # on day 0: pre-infusion sample
        fact("mrd_ngs", "2025-05-01", 0.0001, comparator="<"),
    ]
    (result,) = mrd.derive_mrd(facts, SUBJECT, DAY0)
    assert (result.method, result.date, result.value, result.comparator, result.unit) == (
        "igh_ngs",
        d("2025-05-01"),
        0.0001,
        "<",
        "%",
    )
    assert result.day_from_transplant == 30
    assert mrd.derive_mrd(facts, SUBJECT, None) == ()


def test_same_day_results_numbered_in_time_order_whatever_the_input_order() -> None:
    morning = fact("mrd_flow", "2025-05-01T08:00+08:00", 0.02, ref="Observation/m")
    evening = fact("mrd_flow", "2025-05-01T23:30+08:00", 0.01, ref="Observation/e")
    ngs = fact("mrd_ngs", "2025-05-01T08:00+08:00", 0.001, ref="Observation/n")
    first = mrd.derive_mrd([evening, ngs, morning], SUBJECT, DAY0)
    again = mrd.derive_mrd([morning, evening, ngs], SUBJECT, DAY0)
    assert first == again
    by_ref = {r.evidence[0]: r for r in first}
    expected = {
        "Observation/m": "flow_cytometry:2025-05-01:1",
        "Observation/e": "flow_cytometry:2025-05-01:2",
        "Observation/n": "igh_ngs:2025-05-01:1",
    }
    for ref, key in expected.items():
        assert by_ref[ref].record_id == record_id("NCT06507514", "S-001", "MrdResult", key)


def test_a_word_result_passes_through_without_a_value() -> None:
    facts = [fact("mrd_flow", "2025-05-01", None, attributes={"result": "negative"})]
    (result,) = mrd.derive_mrd(facts, SUBJECT, DAY0)
    assert (result.value, result.unit, result.result) == (None, None, "negative")
