"""Timeline phases 2 and 6: blinatumomab cycles, one MedicationAdministration per bag.

Also holds the protocol regimen the cycles follow (docs/terminology.md §9).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from adapter.demo.generator.clocks import elapsed, stamp
from adapter.demo.generator.patient_run import PatientRun
from adapter.demo.generator.resources import resource_meta
from adapter.demo.generator.vocabulary import INTRAVENOUS, UCUM, Json

# Protocol regimen (docs/terminology.md §9): 28 days of continuous infusion at
# 28 mcg/day, then 14 days off; bags last 1-4 days.
INFUSION_DAYS_PER_CYCLE = 28
DOSE_UG_PER_DAY = 28
DAYS_OFF_BETWEEN_CYCLES = 14
MAINTENANCE_CYCLES = 4
# Label bag table: 240 mL bags run at 10 / 5 / 3.3 / 2.5 mL/h for 24-96 h.
RATE_ML_PER_H = {1: 10.0, 2: 5.0, 3: 3.3, 4: 2.5}


def _bag_dose(run: PatientRun, days: int) -> Json:
    """Total drug in the bag; demo-east sometimes charts it in mg."""
    micrograms = DOSE_UG_PER_DAY * days
    if run.rng.random() < run.site.dose_in_mg_share:
        return {"value": round(micrograms / 1000, 3), "unit": "mg", "system": UCUM, "code": "mg"}
    return {"value": micrograms, "unit": "ug", "system": UCUM, "code": "ug"}


def study_drug_bag(
    run: PatientRun,
    start: datetime,
    end: datetime,
    days: int,
    *,
    status: str = "completed",
    text_only: bool = False,
) -> Json:
    """One blinatumomab bag: period hung to removed, total drug in the bag, pump rate."""
    site = run.site
    updated = (end if status == "completed" else start) + timedelta(minutes=run.rng.randint(5, 90))
    bag: Json = {
        "resourceType": "MedicationAdministration",
        "id": run.new_id("mad"),
        "meta": resource_meta(site, updated),
        "status": status,
    }
    if status == "not-done":
        bag["statusReason"] = [{"text": "bag not hung: infusion pump occlusion, replaced"}]
    bag["medicationCodeableConcept"] = {"text": site.study_drug_text_only} if text_only else site.study_drug
    bag["subject"] = run.subject
    bag["effectivePeriod"] = {"start": stamp(site, start), "end": stamp(site, end)}
    bag["dosage"] = {
        "route": INTRAVENOUS,
        "dose": _bag_dose(run, days),
        "rateQuantity": {"value": RATE_ML_PER_H[days], "unit": "mL/h", "system": UCUM, "code": "mL/h"},
    }
    return bag


def blinatumomab_cycle(run: PatientRun, start: datetime, cycle: int) -> datetime:
    """One cycle of 28 infused days as bags of 1-4 days; returns the last bag's end.

    Bag changes leave gaps of minutes to a few hours (interruptions, not
    cycle breaks).  ``cycle`` 0 is the pre-transplant cycle, 1-4 maintenance.
    """
    rng = run.rng
    remaining = INFUSION_DAYS_PER_CYCLE
    bag_start = start
    bag_number = 0
    while remaining:
        days = min(remaining, rng.randint(1, 4))
        bag_end = elapsed(run.site, bag_start, timedelta(days=days))
        special = cycle == 0 and bag_number == 2
        if special and run.has("not_done_bag"):
            skipped = study_drug_bag(run, bag_start, bag_end, days, status="not-done")
            run.out.emit(skipped)
            run.mess(
                "not_given",
                f"MedicationAdministration/{skipped['id']}",
                "blinatumomab bag in the pre-transplant cycle charted as not done (pump occlusion) and "
                "replaced by the next bag: no issue, no exposure, shown as not given",
            )
        text_only = cycle == 1 and bag_number == 3 and run.has("study_drug_text_only")
        bag = study_drug_bag(run, bag_start, bag_end, days, text_only=text_only)
        run.out.emit(bag)
        if text_only:
            example = run.site.study_drug_text_only
            run.mess(
                "study_drug_text_only",
                f"MedicationAdministration/{bag['id']}",
                f"blinatumomab bag in maintenance cycle 1 coded only as text {example!r}",
            )
        remaining -= days
        bag_number += 1
        if special and run.has("overlap_bag"):
            # The next bag was charted as hung 40 minutes before this one came down.
            bag_start = bag_end - timedelta(minutes=40)
        else:
            bag_start = bag_end + timedelta(minutes=rng.randint(10, 180))
    return bag_end
