"""Protocol records: what the trial repository receives.

One typed model per record type (issue 5 §7).  Every record has a
deterministic id built from (study, subject, record type, natural key), so
re-deriving from the same facts gives the same id and byte-identical JSON,
and a record that stops deriving can be retracted by id.

``evidence`` holds internal source references (``Observation/123``); the
delivery stage replaces them with keyed hashes before anything leaves the
site (docs/design.md §5).
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# A fixed namespace so record ids are stable across machines and releases.
RECORD_NAMESPACE = uuid.UUID("6f1d3b52-2c7e-4f0e-9a52-5c2b1e0d7a11")


def record_id(study: str, subject_id: str, record_type: str, natural_key: str) -> str:
    """Deterministic record id: the same inputs give the same id everywhere."""
    name = "|".join((study, subject_id, record_type, natural_key))
    return str(uuid.uuid5(RECORD_NAMESPACE, name))


class RecordType(StrEnum):
    ELIGIBILITY = "EligibilityAssessment"
    CYCLE = "TreatmentCycle"
    COLLECTION = "StemCellCollection"
    TRANSPLANT = "Transplant"
    RECONSTITUTION = "Reconstitution"
    MRD = "MrdResult"


class ProtocolRecord(BaseModel):
    """Fields every record carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    record_id: str
    record_type: RecordType
    study: str
    subject_id: str
    catalog_version: str
    day_from_transplant: int | None = None
    evidence: tuple[str, ...] = ()


class CriterionStatus(StrEnum):
    MET = "met"
    NOT_MET = "not_met"
    UNKNOWN = "unknown"


class CriterionResult(BaseModel):
    """One organ-function criterion with the value that decided it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    criterion: str
    status: CriterionStatus
    rule: str
    value: float | None = None
    unit: str | None = None
    limit: float | None = None
    date: dt.date | None = None
    reason: str | None = None
    evidence: tuple[str, ...] = ()


class EligibilityAssessment(ProtocolRecord):
    record_type: Literal[RecordType.ELIGIBILITY] = RecordType.ELIGIBILITY
    anchor: Literal["enrolment", "first_infusion"]
    anchor_date: dt.date | None
    window_start: dt.date | None
    overall: CriterionStatus
    criteria: tuple[CriterionResult, ...]


class CyclePhase(StrEnum):
    PRE_TRANSPLANT = "pre_transplant"
    MAINTENANCE = "maintenance"
    UNPHASED = "unphased"  # no transplant day 0 known yet


class TreatmentCycle(ProtocolRecord):
    record_type: Literal[RecordType.CYCLE] = RecordType.CYCLE
    drug: str = "blinatumomab"
    phase: CyclePhase
    number: int
    start: dt.date
    end: dt.date
    infused_days: float
    calendar_days: int
    administrations: int
    total_dose_mcg: float | None = None
    flags: tuple[str, ...] = ()


class StemCellCollection(ProtocolRecord):
    record_type: Literal[RecordType.COLLECTION] = RecordType.COLLECTION
    dates: tuple[dt.date, ...]
    first_date: dt.date
    days_after_pre_transplant_cycle: int | None = None
    flags: tuple[str, ...] = ()


class Transplant(ProtocolRecord):
    record_type: Literal[RecordType.TRANSPLANT] = RecordType.TRANSPLANT
    transplant_type: Literal["autologous"] = "autologous"
    day0: dt.date


class Reconstitution(ProtocolRecord):
    record_type: Literal[RecordType.RECONSTITUTION] = RecordType.RECONSTITUTION
    date: dt.date
    wbc: float = Field(description="10*9/L")
    plt: float = Field(description="10*9/L")


class MrdResult(ProtocolRecord):
    record_type: Literal[RecordType.MRD] = RecordType.MRD
    method: Literal["flow_cytometry", "igh_ngs"]
    date: dt.date
    value: float | None
    unit: str | None
    comparator: str | None = None
    # A result the lab reported as a word, not a number ("negative"); then value is None.
    result: Literal["negative", "positive"] | None = None


AnyRecord = (
    EligibilityAssessment | TreatmentCycle | StemCellCollection | Transplant | Reconstitution | MrdResult
)
