"""Facts: what the mapping stage hands to the protocol stage.

A fact is one source value expressed in protocol terms (subject, concept,
canonical value and unit, time) with enough provenance to trace it back to the
exact source resource version and catalog version that produced it.  Facts are
immutable and carry no PHI: the subject is the trial subject id from the
roster, never the site's patient id or MRN.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class ConceptKind(StrEnum):
    """What sort of source data a concept is made from (docs/design.md §3)."""

    LAB = "lab"
    VITAL = "vital"
    SCORE = "score"
    MEDICATION = "medication"
    PROCEDURE = "procedure"


# The concept kinds each source resource type can carry: a code that means a
# concept of another kind (a drug code on an Observation) is an issue, never a
# fact of the wrong shape.
KINDS_FOR_RESOURCE_TYPE: dict[str, tuple[ConceptKind, ...]] = {
    "Observation": (ConceptKind.LAB, ConceptKind.VITAL, ConceptKind.SCORE),
    "MedicationAdministration": (ConceptKind.MEDICATION,),
    "Procedure": (ConceptKind.PROCEDURE,),
}


# The FHIR event status of an administration the site recorded as not given
# (https://hl7.org/fhir/R4/valueset-medication-admin-status.html).  Such a
# dose is kept as a fact so the console can show it, but it is no exposure:
# the protocol stage leaves it out of every derivation (docs/design.md §4).
NOT_DONE = "not-done"


class Fact(BaseModel):
    """One mapped source value, in the protocol's units.

    ``value`` is ``None`` for facts whose meaning is the event itself (a
    procedure, an administration without a dose).  ``effective_start`` is
    timezone-aware; date-only source times are placed at local midnight of the
    site's timezone by the mapping stage.  ``local_date`` is the calendar day
    of ``effective_start`` in the site's timezone, which is what protocol
    rules count in (a result at 23:30 local belongs to that local day, even if
    it is the next day in UTC).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    site: str
    subject_id: str
    concept: str
    kind: ConceptKind
    value: float | None = None
    unit: str | None = None
    comparator: str | None = None
    original_value: str | None = None
    original_unit: str | None = None
    effective_start: dt.datetime
    effective_end: dt.datetime | None = None
    local_date: dt.date
    local_end_date: dt.date | None = None
    status: str
    reference_high: float | None = None
    source_ref: str
    source_version: str
    catalog_version: str
    attributes: dict[str, str] = {}

    @property
    def happened(self) -> bool:
        """False for a dose the site recorded as not given: it must never count as given."""
        return self.status != NOT_DONE
