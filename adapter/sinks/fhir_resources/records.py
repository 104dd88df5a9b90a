"""Protocol records as FHIR R4 resources: one builder per record type.

Pure functions from a pseudonymized record (``adapter.protocol.records``, as
JSON) to the resource a FHIR-literate reader expects to find.  The choices,
and why, are in docs/fhir-sink.md:

=====================  ==========================  ============================================
record                 resource                    main element
=====================  ==========================  ============================================
EligibilityAssessment  Observation                 valueCodeableConcept met / not_met / unknown,
                                                   one ``component`` per criterion,
                                                   ``effectivePeriod`` = the screening window
Reconstitution         Observation (laboratory)    components WBC (LOINC 6690-2), PLT (777-3)
MrdResult              Observation (laboratory)    valueQuantity with comparator, or a SNOMED CT result
StemCellCollection     Procedure                   performedPeriod (first to last apheresis)
Transplant             Procedure                   performedDateTime = day 0
TreatmentCycle         MedicationAdministration    effectivePeriod, dosage.dose = total dose
=====================  ==========================  ============================================

Every resource carries the record id as an ``identifier`` (what conditional
update matches on) and refers to the subject's pseudonymous Patient.
"""

from __future__ import annotations

from typing import Any

from adapter.sinks.fhir_resources.systems import (
    CPT,
    DATA_ABSENT_REASON,
    LOINC,
    OBSERVATION_CATEGORY,
    RXNORM,
    SNOMED,
    UCUM,
    Systems,
)

RETRACTED_STATUS = "entered-in-error"


class NotExpressible(ValueError):
    """A record that cannot be written as FHIR (unknown type, missing field): the item fails."""


def resource_type_of(record_type: str) -> str:
    try:
        return RESOURCE_TYPES[record_type]
    except KeyError:
        raise NotExpressible(f"record type {record_type!r} has no FHIR mapping") from None


def record_resource(
    record: dict[str, Any], systems: Systems, patient_ref: str, *, retracted: bool = False
) -> dict[str, Any]:
    """The resource for one record; ``retracted`` keeps its content and marks it entered-in-error."""
    record_type = str(record.get("record_type"))
    build = BUILDERS.get(record_type)
    if build is None:
        raise NotExpressible(f"record type {record_type!r} has no FHIR mapping")
    try:
        resource = build(record, systems)
    except (KeyError, TypeError, ValueError) as exc:
        raise NotExpressible(
            f"{record_type} {record.get('record_id')}: cannot express as FHIR ({exc!r})"
        ) from exc
    resource["identifier"] = [{"system": systems.record_id, "value": record["record_id"]}]
    resource["subject"] = {"reference": patient_ref}
    if record.get("day_from_transplant") is not None:
        _extend(resource, systems, "day-from-transplant", valueInteger=record["day_from_transplant"])
    if retracted:
        resource["status"] = RETRACTED_STATUS
    return resource


def _code(systems: Systems, code: str, display: str, *standard: dict[str, str]) -> dict[str, Any]:
    """Our own code, after the standard codings a reader searches by.

    Standard codes are only those the terminology catalog verified
    (docs/terminology.md §1); none is guessed.
    """
    coding = [*standard, {"system": systems.codes, "code": code, "display": display}]
    return {"coding": coding, "text": display}


def _extend(resource: dict[str, Any], systems: Systems, name: str, **value: Any) -> None:
    resource.setdefault("extension", []).append({"url": systems.extension(name), **value})


def _quantity(value: float, unit: str | None, comparator: str | None = None) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value}
    if comparator:
        quantity["comparator"] = comparator
    if unit:
        quantity.update(unit=unit, system=UCUM, code=unit)
    return quantity


def _absent() -> dict[str, Any]:
    return {"coding": [{"system": DATA_ABSENT_REASON, "code": "unknown"}]}


def _laboratory() -> list[dict[str, Any]]:
    return [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}]


def _status(systems: Systems, status: str, reason: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [{"system": systems.criterion_status, "code": status}]}
    if reason:
        concept["text"] = reason
    return concept


def _eligibility(record: dict[str, Any], systems: Systems) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": _code(systems, "eligibility-organ-function", "Organ function eligibility"),
    }
    if record.get("window_start") and record.get("anchor_date"):
        resource["effectivePeriod"] = {"start": record["window_start"], "end": record["anchor_date"]}
    elif record.get("anchor_date"):
        resource["effectiveDateTime"] = record["anchor_date"]
    resource["valueCodeableConcept"] = _status(systems, record["overall"])
    components = []
    for criterion in record["criteria"]:
        component: dict[str, Any] = {
            "code": _code(systems, criterion["criterion"], criterion["rule"]),
            "interpretation": [_status(systems, criterion["status"], criterion.get("reason"))],
            "referenceRange": [{"text": criterion["rule"]}],
        }
        if criterion.get("value") is not None:
            component["valueQuantity"] = _quantity(criterion["value"], criterion.get("unit"))
        else:
            component["dataAbsentReason"] = _absent()
        if criterion.get("date"):
            component["extension"] = [
                {"url": systems.extension("criterion-date"), "valueDate": criterion["date"]}
            ]
        components.append(component)
    resource["component"] = components
    _extend(resource, systems, "eligibility-anchor", valueCode=record["anchor"])
    return resource


def _reconstitution(record: dict[str, Any], systems: Systems) -> dict[str, Any]:
    def count(loinc: str, display: str, value: float) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": display},
            "valueQuantity": _quantity(value, "10*9/L"),
        }

    return {
        "resourceType": "Observation",
        "status": "final",
        "category": _laboratory(),
        "code": _code(
            systems, "haematological-reconstitution", "Haematological reconstitution after transplant"
        ),
        "effectiveDateTime": record["date"],
        "component": [
            count("6690-2", "Leukocytes [#/volume] in Blood by Automated count", record["wbc"]),
            count("777-3", "Platelets [#/volume] in Blood by Automated count", record["plt"]),
        ],
    }


MRD_CODES = {
    "flow_cytometry": ("mrd-flow-cytometry", "Minimal residual disease by flow cytometry"),
    "igh_ngs": ("mrd-igh-ngs", "Minimal residual disease by IgH next-generation sequencing"),
}


# A result the lab reported as a word (MrdResult.result), as SNOMED CT qualifier values.
QUALITATIVE = {"negative": ("260385009", "Negative"), "positive": ("10828004", "Positive")}


def _mrd(record: dict[str, Any], systems: Systems) -> dict[str, Any]:
    code, display = MRD_CODES[record["method"]]
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": _laboratory(),
        "code": _code(systems, code, display),
        "effectiveDateTime": record["date"],
    }
    if record.get("value") is not None:
        resource["valueQuantity"] = _quantity(record["value"], record.get("unit"), record.get("comparator"))
    elif record.get("result") in QUALITATIVE:
        code, display = QUALITATIVE[record["result"]]
        resource["valueCodeableConcept"] = {"coding": [{"system": SNOMED, "code": code, "display": display}]}
    else:
        resource["dataAbsentReason"] = _absent()
    return resource


def _collection(record: dict[str, Any], systems: Systems) -> dict[str, Any]:
    dates = sorted(record["dates"]) or [record["first_date"]]
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "status": "completed",
        "code": _code(
            systems,
            "stem-cell-collection",
            "Peripheral blood stem cell collection (apheresis)",
            {"system": CPT, "code": "38206"},
        ),
        "performedPeriod": {"start": dates[0], "end": dates[-1]},
    }
    for day in dates:
        _extend(resource, systems, "collection-date", valueDate=day)
    if record.get("days_after_pre_transplant_cycle") is not None:
        _extend(
            resource,
            systems,
            "days-after-pre-transplant-cycle",
            valueInteger=record["days_after_pre_transplant_cycle"],
        )
    for flag in record.get("flags") or ():
        _extend(resource, systems, "protocol-flag", valueCode=flag)
    return resource


def _transplant(record: dict[str, Any], systems: Systems) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "status": "completed",
        "code": _code(
            systems,
            f"{record.get('transplant_type', 'autologous')}-hsct",
            "Autologous haematopoietic stem cell transplant (day 0)",
            {
                "system": SNOMED,
                "code": "709115004",
                "display": "Transplantation of autologous hematopoietic stem cell (procedure)",
            },
        ),
        "performedDateTime": record["day0"],
    }


def _cycle(record: dict[str, Any], systems: Systems) -> dict[str, Any]:
    drug = str(record.get("drug") or "blinatumomab")
    resource: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationCodeableConcept": _code(systems, drug, drug, *STANDARD_DRUG_CODES.get(drug, ())),
        "effectivePeriod": {"start": record["start"], "end": record["end"]},
    }
    if record.get("total_dose_mcg") is not None:
        resource["dosage"] = {"dose": _quantity(record["total_dose_mcg"], "ug")}
    _extend(resource, systems, "cycle-phase", valueCode=record["phase"])
    _extend(resource, systems, "cycle-number", valueInteger=record["number"])
    _extend(resource, systems, "infused-days", valueDecimal=record["infused_days"])
    _extend(resource, systems, "calendar-days", valueInteger=record["calendar_days"])
    _extend(resource, systems, "administrations", valueInteger=record["administrations"])
    for flag in record.get("flags") or ():
        _extend(resource, systems, "protocol-flag", valueCode=flag)
    return resource


STANDARD_DRUG_CODES = {"blinatumomab": ({"system": RXNORM, "code": "1597258", "display": "blinatumomab"},)}

BUILDERS = {
    "EligibilityAssessment": _eligibility,
    "Reconstitution": _reconstitution,
    "MrdResult": _mrd,
    "StemCellCollection": _collection,
    "Transplant": _transplant,
    "TreatmentCycle": _cycle,
}
RESOURCE_TYPES = {
    "EligibilityAssessment": "Observation",
    "Reconstitution": "Observation",
    "MrdResult": "Observation",
    "StemCellCollection": "Procedure",
    "Transplant": "Procedure",
    "TreatmentCycle": "MedicationAdministration",
}
