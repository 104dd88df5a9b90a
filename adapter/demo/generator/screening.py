"""Timeline phase 1: screening (E-20 .. E-1), the eligibility evidence.

Echocardiogram, chemistry panel, pulse oximetry, ECOG and dyspnoea grade
inside the 28-day window before enrolment; the planted messes of this phase
are made in :mod:`.messes`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta

from adapter.demo.generator import messes
from adapter.demo.generator.clocks import local_time, stamp
from adapter.demo.generator.patient_run import PatientRun
from adapter.demo.generator.resources import measurement, observation, resource_meta
from adapter.demo.generator.vocabulary import (
    CTCAE_GRADE,
    CTCAE_GRADE_DISPLAY,
    ECOG_ANSWERS,
    LOINC,
    UCUM,
    coding,
)


@dataclass(frozen=True)
class ScreeningValues:
    """Organ-function values in canonical units (mg/dL, U/L, %)."""

    lvef: float
    creatinine: float
    alt: float
    ast: float
    bilirubin: float
    spo2: float
    ecog: int
    dyspnea: int


def _screening_values(run: PatientRun) -> ScreeningValues:
    """Mostly eligible values; the ``ineligible`` patient fails exactly one criterion."""
    rng = run.rng
    values = ScreeningValues(
        lvef=rng.randint(55, 68),
        creatinine=rng.uniform(0.6, 1.2),
        alt=rng.uniform(12, 45),
        ast=rng.uniform(14, 38),
        bilirubin=rng.uniform(0.3, 1.1),
        spo2=rng.randint(95, 99),
        ecog=rng.choice((0, 0, 1)),
        dyspnea=rng.choice((0, 0, 1)),
    )
    if not run.has("ineligible"):
        return values
    if run.site.failed_criterion == "lvef":
        return dataclasses.replace(values, lvef=45)
    return dataclasses.replace(values, alt=run.site.uln["alt"] * 3.44)


def screening(run: PatientRun) -> None:
    """Eligibility evidence (docs/design.md §4) inside the 28-day window before enrolment."""
    rng = run.rng
    values = _screening_values(run)
    echo_day = run.enrolment - timedelta(days=rng.randint(6, 20))
    lab_day = run.enrolment - timedelta(days=rng.randint(2, 12))
    visit_day = run.enrolment - timedelta(days=rng.randint(1, 5))
    _echocardiogram(run, local_time(echo_day, rng.randint(9, 15), rng.randrange(60)), values.lvef)
    if run.has("near_midnight"):
        # Protocol days are local days: this panel's UTC date differs from its local date.
        drawn = local_time(lab_day, 0) + timedelta(minutes=run.site.midnight_draw_minutes)
    else:
        drawn = local_time(lab_day, rng.randint(7, 11), rng.randrange(60))
    _chemistry_panel(run, drawn, values)
    vitals_time = local_time(visit_day, rng.randint(8, 15), rng.randrange(60))
    _pulse_oximetry(run, vitals_time, values.spo2)
    _ecog(run, vitals_time + timedelta(minutes=10), values.ecog)
    _dyspnea_grade(run, vitals_time + timedelta(minutes=12), values.dyspnea)


def _echocardiogram(run: PatientRun, when: datetime, lvef: float) -> None:
    """Screening TTE: a Procedure plus the LVEF it measured."""
    run.out.emit(
        {
            "resourceType": "Procedure",
            "id": run.new_id("prc"),
            "meta": resource_meta(run.site, when + timedelta(hours=3)),
            "status": "completed",
            "code": run.site.procedures["echo"],
            "subject": run.subject,
            "performedDateTime": stamp(run.site, when),
        }
    )
    run.out.emit(measurement(run, "lvef", when + timedelta(minutes=40), lvef))


def _chemistry_panel(run: PatientRun, drawn: datetime, values: ScreeningValues) -> None:
    """Creatinine, ALT, AST, bilirubin from one draw, with this patient's messes."""
    if run.has("unknown_unit"):
        messes.creatinine_without_unit(run, drawn - timedelta(days=2), values.creatinine)
    if run.has("entered_in_error"):
        messes.retracted_creatinine(run, drawn, values.creatinine)
    else:
        run.out.emit(measurement(run, "creatinine", drawn, values.creatinine))
    run.out.emit(measurement(run, "alt", drawn, values.alt))
    run.out.emit(measurement(run, "ast", drawn, values.ast))
    run.out.emit(measurement(run, "bilirubin", drawn, values.bilirubin))
    if run.has("unknown_code"):
        messes.local_sodium_code(run, drawn)
    if run.has("missing_time"):
        messes.untimed_ast(run, drawn, values.ast)


def _pulse_oximetry(run: PatientRun, when: datetime, spo2: float) -> None:
    """SpO2 with the room-air evidence in one of the shapes seen in EHRs.

    The SpO2 criterion needs "without supplemental oxygen" (on room air,
    docs/design.md §4): some systems put the O2 flow or FiO2 in a component,
    some chart the flow as its own Observation at the same time, and some
    send nothing (criterion unknown).
    """
    rng = run.rng
    obs = measurement(run, "spo2", when, spo2, result_delay_minutes=rng.randint(1, 10))
    shape = "none" if run.has("no_oxygen_info") else rng.choice(("flow", "fio2", "separate"))
    if shape == "flow":
        obs["component"] = [
            {
                "code": {"coding": [coding(LOINC, "3151-8", "Inhaled oxygen flow rate")]},
                "valueQuantity": {"value": 0, "unit": "L/min", "system": UCUM, "code": "L/min"},
            }
        ]
    elif shape == "fio2":
        obs["component"] = [
            {
                "code": {"coding": [coding(LOINC, "3150-0", "Inhaled oxygen concentration")]},
                "valueQuantity": {"value": 21, "unit": "%", "system": UCUM, "code": "%"},
            }
        ]
    run.out.emit(obs)
    if shape == "separate":
        run.out.emit(measurement(run, "o2_flow", when, 0, result_delay_minutes=rng.randint(1, 10)))


def _ecog(run: PatientRun, when: datetime, score: int) -> None:
    """ECOG as valueInteger, or as an LA answer code (both shapes exist, docs/terminology.md §5)."""
    obs = observation(run, "ecog", when, result_delay_minutes=5)
    if run.rng.random() < run.site.ecog_as_answer_share:
        code, display = ECOG_ANSWERS[score]
        obs["valueCodeableConcept"] = {"coding": [coding(LOINC, code, display)]}
    else:
        obs["valueInteger"] = score
    run.out.emit(obs)


def _dyspnea_grade(run: PatientRun, when: datetime, grade: int) -> None:
    """CTCAE v5 dyspnoea grade, as an integer or as a CTCAE grade code."""
    obs = observation(run, "dyspnea", when, result_delay_minutes=5)
    if run.rng.random() < 0.5:
        obs["valueInteger"] = grade
    else:
        answer = coding(CTCAE_GRADE, str(grade), CTCAE_GRADE_DISPLAY[grade])
        obs["valueCodeableConcept"] = {"coding": [answer]}
    run.out.emit(obs)
