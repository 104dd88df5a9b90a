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
from typing import Any

import orjson
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

    @classmethod
    def trusted(cls, values: dict[str, Any]) -> Fact:
        """A fact of values already of their fields' types: ``model_construct`` without its loop.

        ``model_construct`` looks up every field's aliases and default one by
        one, which cost a third of mapping a resource.  This sets what it
        sets (the field values in field order, no extra, no private state;
        every field counts as set, as after validation) in a few steps.  A
        field ``values`` leaves out takes its default; a required one left
        out, or a key that is no field, raises ``ValueError``.
        tests/mapping/test_lean_parity.py holds a trusted fact to what
        validation makes of the same values, so a pydantic release that
        changes what a model holds fails there.
        """
        fields = _TEMPLATE.copy()  # field order, defaults, _REQUIRED where there is none
        fields["attributes"] = {}
        fields.update(values)
        if len(fields) != len(_TEMPLATE) or _REQUIRED in fields.values():
            raise ValueError(f"a fact needs exactly the fields {sorted(_TEMPLATE)}, got {sorted(values)}")
        fact = cls.__new__(cls)
        setattr_ = object.__setattr__
        setattr_(fact, "__dict__", fields)
        setattr_(fact, "__pydantic_fields_set__", set(_TEMPLATE))
        setattr_(fact, "__pydantic_extra__", None)
        setattr_(fact, "__pydantic_private__", None)
        return fact


# What a fact says about where it came from, not what it says: the source
# version and the catalog version that made it.  No derivation reads them.
PROVENANCE_FIELDS = ("source_version", "catalog_version")


def same_substance(payloads: list[str], others: list[str]) -> bool:
    """Whether two lists of stored fact payloads say the same, provenance aside, in the same order.

    A new version of a resource (a note added, the server's bookkeeping)
    gives facts that differ from the stored ones only in ``source_version``;
    derivations, which never read provenance, come out the same from both.
    """
    if len(payloads) != len(others):
        return False
    return all(_substance(a) == _substance(b) for a, b in zip(payloads, others, strict=True))


def _substance(payload: str) -> dict[str, Any]:
    fact: dict[str, Any] = orjson.loads(payload)
    for field in PROVENANCE_FIELDS:
        fact.pop(field, None)
    return fact


_REQUIRED: Any = object()
_TEMPLATE: dict[str, Any] = {
    name: _REQUIRED if field.is_required() else field.default for name, field in Fact.model_fields.items()
}
