"""Whole patients: a roster patient's protocol timeline, phase by phase, and the stray patient."""

from __future__ import annotations

from datetime import timedelta

from adapter.demo.generator.blood_counts import blood_counts
from adapter.demo.generator.clocks import elapsed, local_time, morning_draw
from adapter.demo.generator.follow_up import maintenance, mrd_follow_up
from adapter.demo.generator.infusions import blinatumomab_cycle, study_drug_bag
from adapter.demo.generator.patient_run import PatientRun
from adapter.demo.generator.resources import measurement
from adapter.demo.generator.screening import screening
from adapter.demo.generator.transplant import mobilization, transplant


def roster_patient(run: PatientRun) -> None:
    """Write one roster patient's whole protocol timeline, phase by phase."""
    rng = run.rng
    screening(run)
    first_bag = local_time(
        run.enrolment + timedelta(days=rng.randint(3, 10)), rng.randint(9, 14), rng.randrange(60)
    )
    cycle_end = blinatumomab_cycle(run, first_bag, 0)
    collection = mobilization(run, cycle_end)
    day0 = transplant(run, collection)
    recovery_day = blood_counts(run, day0)
    mrd_follow_up(run, day0)
    maintenance(run, day0 + timedelta(days=recovery_day))
    for resource in run.replay:
        run.out.emit(resource)


def stray_patient(run: PatientRun) -> None:
    """A patient the site sends who is not on the trial roster (e.g. a compassionate-use case)."""
    rng = run.rng
    drawn = morning_draw(rng, run.enrolment)
    run.out.emit(measurement(run, "creatinine", drawn, rng.uniform(0.6, 1.1)))
    run.out.emit(measurement(run, "wbc", drawn, rng.uniform(4, 8)))
    run.out.emit(measurement(run, "plt", drawn, rng.uniform(160, 260)))
    start = local_time(run.enrolment + timedelta(days=2), 11, rng.randrange(60))
    run.out.emit(study_drug_bag(run, start, elapsed(run.site, start, timedelta(days=2)), 2))
    run.mess(
        "patient_not_on_roster",
        f"Patient/{run.patient_id}",
        "patient not in roster.csv, with 3 Observations and 1 blinatumomab MedicationAdministration",
    )
