"""Timeline phases 6 and 7: maintenance cycles and MRD follow-up after the transplant."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from adapter.demo.generator.clocks import local_time
from adapter.demo.generator.infusions import DAYS_OFF_BETWEEN_CYCLES, MAINTENANCE_CYCLES, blinatumomab_cycle
from adapter.demo.generator.patient_run import PatientRun
from adapter.demo.generator.resources import measurement_quantity, observation, to_decimals
from adapter.demo.generator.vocabulary import Json


def maintenance(run: PatientRun, recovered: date) -> None:
    """Four maintenance cycles: 28 infused days, then 14 days off."""
    rng = run.rng
    start_day = recovered + timedelta(days=rng.randint(14, 28))
    start = local_time(start_day, rng.randint(9, 14), rng.randrange(60))
    for cycle in range(1, MAINTENANCE_CYCLES + 1):
        end = blinatumomab_cycle(run, start, cycle)
        next_day = end.date() + timedelta(days=DAYS_OFF_BETWEEN_CYCLES + rng.randint(0, 2))
        start = local_time(next_day, rng.randint(9, 14), rng.randrange(60))


def mrd_follow_up(run: PatientRun, day0: date) -> None:
    """Flow and IgH-NGS MRD on bone marrow around days 30, 90 and 150."""
    rng = run.rng
    for visit, target in enumerate((30, 90, 150)):
        drawn = local_time(
            day0 + timedelta(days=target + rng.randint(-4, 4)), rng.randint(8, 11), rng.randrange(60)
        )
        preliminary = visit == 2 and run.has("preliminary")
        flow = _mrd_result(
            run,
            "mrd_flow",
            drawn,
            positive=rng.random() < 0.1,
            limit=0.01,
            status="preliminary" if preliminary else "final",
        )
        run.out.emit(flow)
        if preliminary:
            run.mess(
                "not_final",
                f"Observation/{flow['id']}",
                "MRD flow result still preliminary (final report pending)",
            )
        ngs_drawn = drawn + timedelta(minutes=5)
        run.out.emit(_mrd_result(run, "mrd_ngs", ngs_drawn, positive=rng.random() < 0.1, limit=0.0001))


def _mrd_result(
    run: PatientRun, concept: str, drawn: datetime, *, positive: bool, limit: float, status: str = "final"
) -> Json:
    """A fraction in %, often as "< limit of detection" with a comparator.

    Measured negatives are only reported by flow (e.g. 0.005 %); IgH-NGS
    negatives are always "< 0.0001 %" (1 in 10^6 cells), which also keeps
    numbers out of exponent notation in the JSON.
    """
    rng = run.rng
    obs = observation(run, concept, drawn, status=status, result_delay_minutes=rng.randint(2, 6) * 1440)
    lab = run.site.labs[concept]
    if positive:
        obs["valueQuantity"] = measurement_quantity(
            lab, to_decimals(limit * rng.uniform(1.5, 8), lab.decimals)
        )
    elif concept == "mrd_flow" and rng.random() < 0.5:
        obs["valueQuantity"] = measurement_quantity(
            lab, to_decimals(limit * rng.uniform(0.1, 0.8), lab.decimals + 1)
        )
    else:
        quantity = measurement_quantity(lab, limit)
        obs["valueQuantity"] = {"value": quantity.pop("value"), "comparator": "<", **quantity}
    return obs
