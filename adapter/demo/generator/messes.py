"""Planted messes: the faulty resources each mapping issue type is tested with.

Each function writes the faulty resource(s) for one role and records a
:class:`~.output.Mess` naming the issue the adapter should raise, which
``messes.json`` lists.  Messes that are only a flag on an ordinary resource
(a not-done or overlapping bag, a text-only drug, a preliminary MRD result,
a near-midnight draw) stay inline in their timeline phase.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from adapter.demo.generator.patient_run import PatientRun
from adapter.demo.generator.resources import measurement, observation
from adapter.demo.generator.vocabulary import DATA_ABSENT_REASON, Json, coding


def retracted_creatinine(run: PatientRun, drawn: datetime, creatinine: float) -> None:
    """A mis-keyed result retracted as entered-in-error, plus the corrected result.

    The wrong value would fail eligibility, so an adapter that does not drop
    entered-in-error results gets this patient wrong.  It is the site's own
    correction, so it raises no issue either.
    """
    wrong = measurement(
        run,
        "creatinine",
        drawn,
        creatinine * 10,
        status="entered-in-error",
        version=2,
        result_delay_minutes=60,
    )
    corrected = measurement(run, "creatinine", drawn, creatinine, result_delay_minutes=300)
    run.out.emit(wrong)
    run.out.emit(corrected)
    run.mess(
        "withdrawn",
        f"Observation/{wrong['id']}",
        f"creatinine retracted as entered-in-error (decimal slip): no issue, shown in the subject's "
        f"history; the corrected result is Observation/{corrected['id']} with the same effective time",
    )


def creatinine_without_unit(run: PatientRun, drawn: datetime, creatinine: float) -> None:
    """An earlier creatinine sent with a bare number: mg/dL or umol/L cannot be told."""
    obs = measurement(run, "creatinine", drawn, creatinine)
    obs["valueQuantity"] = {"value": obs["valueQuantity"]["value"]}
    run.out.emit(obs)
    run.mess(
        "unknown_unit",
        f"Observation/{obs['id']}",
        "creatinine valueQuantity has a value but no unit, system or code; "
        "a later creatinine with a unit exists",
    )


def local_sodium_code(run: PatientRun, drawn: datetime) -> None:
    """A local lab code outside the protocol catalog (found by discover)."""
    run.out.emit(measurement(run, "sodium", drawn, run.rng.randint(136, 144)))
    lab = run.site.labs["sodium"]
    code = lab.codings[0]
    resource = f"code:{code['system']}|{code['code']}"
    if not any(m.resource == resource for m in run.messes):
        run.mess(
            "unknown_code",
            resource,
            "local LIS code 0099 (钠, sodium) is not a protocol concept; sent for two patients",
        )


def untimed_ast(run: PatientRun, drawn: datetime, ast: float) -> None:
    """An extra AST with neither effective[x] nor issued."""
    obs = measurement(run, "ast", drawn + timedelta(hours=2), ast, timed=False)
    run.out.emit(obs)
    run.mess(
        "missing_time",
        f"Observation/{obs['id']}",
        "AST result without effective[x] and without issued; a timed AST exists the same day",
    )


def plant_duplicate(run: PatientRun, obs: Json) -> None:
    """The same line (id and versionId) sent twice, as overlapping exports do."""
    run.replay.append(obs)
    run.mess(
        "duplicate",
        f"Observation/{obs['id']}",
        "identical line appears twice in Observation.ndjson; dedupe silently, no issue",
    )


def clotted_platelet_sample(run: PatientRun, drawn: datetime) -> None:
    """A platelet result with dataAbsentReason instead of a value; redrawn later."""
    obs = observation(run, "plt", drawn)
    obs["dataAbsentReason"] = {
        "coding": [coding(DATA_ABSENT_REASON, "error", "Error")],
        "text": "specimen clotted",
    }
    run.out.emit(obs)
    run.mess(
        "missing_value",
        f"Observation/{obs['id']}",
        "platelet count with dataAbsentReason 'error' (clotted) and no value; redrawn the same morning",
    )


def mis_keyed_platelet(run: PatientRun, drawn: datetime, real_value: float) -> None:
    """A mis-keyed 9999 platelet count on a day WBC has recovered but PLT has not.

    Accepting it would move the reconstitution date earlier.
    """
    obs = measurement(run, "plt", drawn, 9999)
    run.out.emit(obs)
    run.mess(
        "implausible_value",
        f"Observation/{obs['id']}",
        f"platelet count 9999 10^9/L (real value about {real_value:.0f}); "
        "accepting it would date reconstitution too early",
    )
