"""Small builders shared by all resource kinds: meta, quantities, Observations.

Values are made in the protocol's canonical units and converted here into
the site's own unit and coding, so each timeline phase tells one clinical
story that both hospitals write in their own way.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from adapter.demo.generator.clocks import server_instant, stamp
from adapter.demo.generator.patient_run import PatientRun
from adapter.demo.generator.profile import LabCode, SiteProfile
from adapter.demo.generator.vocabulary import CATEGORY_DISPLAY, OBSERVATION_CATEGORY, UCUM, Json, coding


def resource_meta(site: SiteProfile, updated_local: datetime, version: int = 1) -> Json:
    """``meta`` as the server writes it: versionId and a UTC lastUpdated."""
    return {"versionId": str(version), "lastUpdated": server_instant(site, updated_local)}


def to_decimals(value: float, decimals: int) -> float | int:
    """Round as the lab reports; whole numbers (0 decimals) are written as integers."""
    rounded = round(value, decimals)
    return int(rounded) if decimals == 0 else rounded


def measurement_quantity(lab: LabCode, site_value: float | int) -> Json:
    """A Quantity in the lab's unit, with its UCUM code where the site sends one."""
    quantity: Json = {"value": site_value}
    if lab.unit is not None:
        quantity["unit"] = lab.unit
    if lab.ucum is not None:
        quantity["system"] = UCUM
        quantity["code"] = lab.ucum
    return quantity


def _site_value(lab: LabCode, canonical: float) -> float | int:
    return to_decimals(canonical * lab.factor, lab.decimals)


def _category(code: str) -> list[Json]:
    return [{"coding": [coding(OBSERVATION_CATEGORY, code, CATEGORY_DISPLAY[code])]}]


def _observation_code(run: PatientRun, lab: LabCode) -> Json:
    codings = list(lab.codings)
    if lab.loinc_beside is not None and run.rng.random() < 0.5:
        codings.append(lab.loinc_beside)
    return {"coding": codings, "text": lab.text}


def observation(
    run: PatientRun,
    concept: str,
    when: datetime,
    *,
    status: str = "final",
    version: int = 1,
    timed: bool = True,
    result_delay_minutes: int | None = None,
) -> Json:
    """The common head of an Observation; callers append the value keys.

    ``timed=False`` leaves out effective[x] and issued (the missing-time mess);
    ``when`` still drives ``meta.lastUpdated``.
    """
    site = run.site
    lab = site.labs[concept]
    delay = result_delay_minutes if result_delay_minutes is not None else run.rng.randint(35, 240)
    issued = when + timedelta(minutes=delay)
    updated = issued + timedelta(minutes=2 + (version - 1) * 1440)
    obs: Json = {
        "resourceType": "Observation",
        "id": run.new_id("obs"),
        "meta": resource_meta(site, updated, version),
        "status": status,
        "category": _category(lab.category),
        "code": _observation_code(run, lab),
        "subject": run.subject,
    }
    if timed:
        obs["effectiveDateTime"] = stamp(site, when)
        obs["issued"] = stamp(site, issued)
    return obs


def measurement(
    run: PatientRun,
    concept: str,
    when: datetime,
    canonical: float,
    *,
    status: str = "final",
    version: int = 1,
    timed: bool = True,
    result_delay_minutes: int | None = None,
) -> Json:
    """A numeric result, converted into the site's unit."""
    lab = run.site.labs[concept]
    obs = observation(
        run,
        concept,
        when,
        status=status,
        version=version,
        timed=timed,
        result_delay_minutes=result_delay_minutes,
    )
    obs["valueQuantity"] = measurement_quantity(lab, _site_value(lab, canonical))
    if concept in run.site.uln:
        uln = run.site.uln[concept]
        obs["referenceRange"] = [
            {
                "low": measurement_quantity(lab, 7 if concept == "alt" else 10),
                "high": measurement_quantity(lab, to_decimals(uln, 0)),
            }
        ]
    return obs
