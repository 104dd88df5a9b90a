"""Timeline phases 3 and 4: G-CSF mobilisation, apheresis and the transplant (day 0)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from adapter.demo.generator.clocks import local_time, stamp
from adapter.demo.generator.patient_run import PatientRun
from adapter.demo.generator.resources import resource_meta
from adapter.demo.generator.vocabulary import SUBCUTANEOUS, UCUM


def mobilization(run: PatientRun, cycle_end: datetime) -> date:
    """G-CSF daily for five days, apheresis on the last; returns the collection date.

    The collection lands 5-9 days after the pre-transplant cycle, i.e. "about
    one week", the protocol's window.
    """
    rng = run.rng
    collection = cycle_end.date() + timedelta(days=rng.randint(5, 9))
    for offset in range(4, -1, -1):
        given = local_time(collection - timedelta(days=offset), 8, rng.randrange(60))
        run.out.emit(
            {
                "resourceType": "MedicationAdministration",
                "id": run.new_id("mad"),
                "meta": resource_meta(run.site, given + timedelta(minutes=rng.randint(5, 60))),
                "status": "completed",
                "medicationCodeableConcept": run.site.gcsf,
                "subject": run.subject,
                "effectiveDateTime": stamp(run.site, given),
                "dosage": {
                    "route": SUBCUTANEOUS,
                    "dose": {"value": rng.choice((480, 600)), "unit": "ug", "system": UCUM, "code": "ug"},
                },
            }
        )
    start = local_time(collection, rng.randint(9, 10), rng.randrange(60))
    end = start + timedelta(minutes=rng.randint(210, 300))
    run.out.emit(
        {
            "resourceType": "Procedure",
            "id": run.new_id("prc"),
            "meta": resource_meta(run.site, end + timedelta(hours=1)),
            "status": "completed",
            "code": run.site.procedures["apheresis"],
            "subject": run.subject,
            "performedPeriod": {"start": stamp(run.site, start), "end": stamp(run.site, end)},
        }
    )
    return collection


def transplant(run: PatientRun, collection: date) -> date:
    """The autologous HSCT 10-20 days after collection; its date is day 0."""
    day0 = collection + timedelta(days=run.rng.randint(10, 20))
    infused = local_time(day0, run.rng.randint(10, 14), run.rng.randrange(60))
    run.out.emit(
        {
            "resourceType": "Procedure",
            "id": run.new_id("prc"),
            "meta": resource_meta(run.site, infused + timedelta(hours=4)),
            "status": "completed",
            "code": run.site.procedures["hsct"],
            "subject": run.subject,
            "performedDateTime": stamp(run.site, infused),
        }
    )
    return day0
