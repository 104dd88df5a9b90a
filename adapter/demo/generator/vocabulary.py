"""Code systems, displays and coded values both demo hospitals draw on.

Kept apart from the site profiles so that a builder needing, say, the LOINC
system or the intravenous route does not depend on either hospital.
"""

from __future__ import annotations

from typing import Any

# A FHIR resource or element as written to NDJSON; orjson keeps key order.
Json = dict[str, Any]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
CPT = "http://www.ama-assn.org/go/cpt"
ICD9CM = "http://hl7.org/fhir/sid/icd-9-cm"
MEDDRA = "http://terminology.hl7.org/CodeSystem/mdr"
CTCAE_GRADE = "http://hl7.org/fhir/us/ctcae/CodeSystem/ctcae-grade-code-system"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"

NORTH_LAB = "http://hospital-north.example/fhir/lab"
EAST_LIS = "http://hospital-east.example/fhir/lis"
EAST_PROCEDURE = "http://hospital-east.example/fhir/procedure"

# LOINC long names, shared by both sites (docs/terminology.md §2-§5).
LVEF_DISPLAY = "Left ventricular Ejection fraction"
CREATININE_MASS_DISPLAY = "Creatinine [Mass/volume] in Serum or Plasma"
BILIRUBIN_MASS_DISPLAY = "Bilirubin.total [Mass/volume] in Serum or Plasma"
SPO2_DISPLAY = "Oxygen saturation in Arterial blood by Pulse oximetry"
O2_FLOW_DISPLAY = "Inhaled oxygen flow rate"
ECOG_DISPLAY = "ECOG Performance Status score"
WBC_DISPLAY = "Leukocytes [#/volume] in Blood by Automated count"
PLT_DISPLAY = "Platelets [#/volume] in Blood by Automated count"
ALT_LOINC_DISPLAY = "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma"
AST_LOINC_DISPLAY = "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma"

CATEGORY_DISPLAY = {
    "laboratory": "Laboratory",
    "vital-signs": "Vital Signs",
    "survey": "Survey",
    "imaging": "Imaging",
}
INTRAVENOUS = {"coding": [{"system": SNOMED, "code": "47625008", "display": "Intravenous route"}]}
SUBCUTANEOUS = {"coding": [{"system": SNOMED, "code": "34206005", "display": "Subcutaneous route"}]}
ECOG_ANSWERS = {
    0: ("LA9622-7", "Fully active, able to carry on all pre-disease performance without restriction"),
    1: ("LA9623-5", "Restricted in physically strenuous activity but ambulatory"),
    2: ("LA9624-3", "Ambulatory and capable of all selfcare but unable to carry out any work activities"),
}
CTCAE_GRADE_DISPLAY = {0: "Absent Adverse Event", 1: "Mild Adverse Event"}


def coding(system: str, code: str, display: str) -> Json:
    """A FHIR Coding with its display."""
    return {"system": system, "code": code, "display": display}


def codeable_concept(system: str, code: str, display: str, text: str | None = None) -> Json:
    """A CodeableConcept with one coding and, if given, the site's own text."""
    concept: Json = {"coding": [coding(system, code, display)]}
    if text:
        concept["text"] = text
    return concept
