"""The subject's resources: the pseudonymous Patient, the ResearchStudy and the ResearchSubject.

Every record resource refers to the subject's Patient; the ResearchSubject
ties that Patient to the study.  They carry trial ids only: the record is
already pseudonymized when it arrives (``adapter.privacy``).
"""

from __future__ import annotations

from typing import Any

from adapter.sinks.fhir_resources.systems import CLINICALTRIALS_GOV, SECURITY_INTEGRITY, Systems


def patient(subject_id: str, systems: Systems) -> dict[str, Any]:
    """The pseudonymous Patient a ResearchSubject must point to: a trial subject id and nothing else."""
    return {
        "resourceType": "Patient",
        "meta": {"security": [{"system": SECURITY_INTEGRITY, "code": "PSEUDED", "display": "pseudonymized"}]},
        "identifier": [{"system": systems.subject_id, "value": subject_id}],
    }


def study_identifier(study: str, systems: Systems) -> tuple[str, str]:
    """ClinicalTrials.gov ids (NCT...) under the registry's own system, anything else under ours."""
    return (CLINICALTRIALS_GOV if study.startswith("NCT") else systems.study_id), study


def research_study(study: str, systems: Systems) -> dict[str, Any]:
    system, value = study_identifier(study, systems)
    return {
        "resourceType": "ResearchStudy",
        "identifier": [{"system": system, "value": value}],
        "status": "active",
    }


def research_subject(subject_id: str, study_ref: str, patient_ref: str, systems: Systems) -> dict[str, Any]:
    return {
        "resourceType": "ResearchSubject",
        "identifier": [{"system": systems.subject_id, "value": subject_id}],
        "status": "on-study",
        "study": {"reference": study_ref},
        "individual": {"reference": patient_ref},
    }
