"""Lean FHIR R4B models: only the elements the mapping engine reads.

Validating a source resource with the full ``fhir.resources`` R4B models costs
about 80x an ``orjson`` parse (~230 µs per Observation): every element of every
datatype is a model, many primitives run Python validators, and unknown
elements are rejected.  The engine (``adapter/mapping/engine.py``) reads about
twenty of them.  These models declare exactly those, with the same attribute
names and the same Python values the R4B models give the engine
(``effectiveDateTime`` is a ``datetime``, a ``date`` or a partial-date
``str``; ``Quantity.value`` is a ``Decimal``; codings are objects with
``.system``/``.code``/``.display``; ``get_resource_type()``), so the engine
works with either by duck typing.

What is validated, and how strictly (the decision; ``tests/mapping/test_lean_parity.py``
holds the models to it on the demo data and on generated resources):

* Every element the engine reads is validated as fhir.resources R4B
  validates it, with the same result: the FHIR regexes for ``id``, ``code``,
  ``string``, ``decimal``, ``dateTime`` and ``instant``
  (https://hl7.org/fhir/R4/datatypes.html#primitive), 32-bit ``integer``,
  no null items in lists, required elements (``Observation.code``,
  ``subject`` of administrations and procedures, ``component.code``: the key
  must be there, a JSON null passes as in R4B and the engine raises its own
  issue), ``status`` (absent only when ``_status`` carries an extension,
  https://hl7.org/fhir/R4/extensibility.html#Special-Case), and a choice
  element (``value[x]``, ``effective[x]``, ``medication[x]``,
  ``performed[x]``, https://hl7.org/fhir/R4/formats.html#choice) carrying at
  most one type, exactly one where R4 requires it.  R4B's laxness is kept
  too (a JSON number as a dateTime is a Unix timestamp, "5" is an integer),
  because the test for "same result" is the mapping, not our taste.  A
  resource that breaks any of these is rejected, so the sync raises
  ``invalid_resource`` for it as before; the messages name the element and
  the rule, never the value (no PHI in issues).
* Elements the engine does not read are ignored, not validated:
  ``performer``, ``note``, ``meta``, ``issued``, extensions (and the content
  of ``_status``'s extension), contained resources other than the Medication
  a ``medicationReference: "#id"`` points at, unknown elements (a later FHIR
  version's, a typo'd name).  The full R4B models reject the whole resource
  for any of these (for a contained resource of an unknown type they even
  raise ``KeyError``), which would hide a valid creatinine or a blinatumomab
  bag behind an error the protocol does not depend on; such a resource is
  mapped.  Validation mode ``r4b`` (``adapter.fhir.validation``) restores
  full R4B validation, e.g. to audit a site's conformance.

Speed comes from pydantic-core: plain ``BaseModel``s, constraints as
``pattern=``/typed fields compiled into the Rust validator, and FHIR
primitives expressed as core-schema unions instead of Python validators
(``lean_primitives``).  The only Python code that runs per resource is one
small check of the choice elements and required ``status`` on the raw dict.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Discriminator, Tag
from pydantic_core import PydanticCustomError

from adapter.fhir.validation.lean_primitives import Code, DateTime, Decimal, Id, Instant, Integer, String, Uri

__all__ = [
    "CodeableConcept",
    "Coding",
    "MedicationAdministration",
    "Observation",
    "Period",
    "Procedure",
    "Quantity",
    "Reference",
    "model_for",
]

# ----------------------------------------------------------------- datatypes

_LEAN = ConfigDict(extra="ignore", frozen=True)


class _Element(BaseModel):
    model_config = _LEAN


class Coding(_Element):
    system: Uri | None = None
    code: Code | None = None
    display: String | None = None


class CodeableConcept(_Element):
    coding: list[Coding] | None = None
    text: String | None = None


class Quantity(_Element):
    value: Decimal | None = None
    comparator: Code | None = None
    unit: String | None = None
    system: Uri | None = None
    code: Code | None = None


class Reference(_Element):
    reference: String | None = None


class Period(_Element):
    start: DateTime | None = None
    end: DateTime | None = None


# ----------------------------------------------------------------- choice and required elements

_OBSERVATION_VALUE = (
    "valueBoolean",
    "valueCodeableConcept",
    "valueDateTime",
    "valueInteger",
    "valuePeriod",
    "valueQuantity",
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "valueString",
    "valueTime",
)


class _Choices:
    """The rules fhir.resources checks after building a model, run on the raw dict.

    A choice element carries one type at most, exactly one when required
    (https://hl7.org/fhir/R4/formats.html#choice); ``status``, when required,
    may be absent only if ``_status`` explains why with an extension
    (https://hl7.org/fhir/R4/extensibility.html#Special-Case).  One set
    intersection decides the common case.  Messages name elements, never values.
    """

    def __init__(self, *groups: tuple[str, tuple[str, ...], bool], status: bool) -> None:
        self.groups = tuple(
            (name, frozenset(alternatives), required) for name, alternatives, required in groups
        )
        self.keys = frozenset().union(*(alternatives for _, alternatives, _ in self.groups))
        self.status = status

    def check(self, data: dict[str, Any]) -> None:
        present = self.keys.intersection(data)
        for name, alternatives, required in self.groups:
            found = present & alternatives
            if len(found) > 1 or required:
                given = {key for key in found if data[key] is not None}  # null is absent, as in R4B
                if len(given) > 1:
                    raise PydanticCustomError(
                        "fhir_choice",
                        "{name}[x] must have one type, got {given}",
                        {"name": name, "given": ", ".join(sorted(given))},
                    )
                if required and not given:
                    raise PydanticCustomError(
                        "fhir_choice",
                        "{name}[x] is required: one of {alternatives}",
                        {"name": name, "alternatives": ", ".join(sorted(alternatives))},
                    )
        if self.status and data.get("status") is None:
            explained = data.get("_status")
            extensions = explained.get("extension") if isinstance(explained, dict) else None
            if not (isinstance(extensions, list) and extensions):
                raise PydanticCustomError("missing", "status is required")


class _Resource(BaseModel):
    model_config = _LEAN

    resource_type: ClassVar[str]
    choices: ClassVar[_Choices] = _Choices(status=True)

    id: Id | None = None

    @pydantic.model_validator(mode="before")
    @classmethod
    def _check_choices(cls, data: Any) -> Any:
        if isinstance(data, dict):
            cls.choices.check(data)
        return data

    @classmethod
    def get_resource_type(cls) -> str:
        return cls.resource_type


class ObservationReferenceRange(_Element):
    high: Quantity | None = None


class ObservationComponent(_Element):
    code: CodeableConcept | None  # required, but null passes (R4B: the engine then sees no code)
    valueQuantity: Quantity | None = None

    choices: ClassVar[_Choices] = _Choices(("value", _OBSERVATION_VALUE, False), status=False)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _check_choices(cls, data: Any) -> Any:
        if isinstance(data, dict):
            cls.choices.check(data)
        return data


class Observation(_Resource):
    resource_type: ClassVar[str] = "Observation"
    choices: ClassVar[_Choices] = _Choices(
        ("effective", ("effectiveDateTime", "effectiveInstant", "effectivePeriod", "effectiveTiming"), False),
        ("value", _OBSERVATION_VALUE, False),
        status=True,
    )

    resourceType: Literal["Observation"] | None = None
    status: Code | None = None  # required: see _check_choices
    code: CodeableConcept | None  # required, but null passes, as in R4B
    subject: Reference | None = None
    effectiveDateTime: DateTime | None = None
    effectiveInstant: Instant | None = None
    effectivePeriod: Period | None = None
    valueQuantity: Quantity | None = None
    valueCodeableConcept: CodeableConcept | None = None
    valueString: String | None = None
    valueInteger: Integer | None = None
    dataAbsentReason: CodeableConcept | None = None
    interpretation: list[CodeableConcept] | None = None
    referenceRange: list[ObservationReferenceRange] | None = None
    component: list[ObservationComponent] | None = None


class Medication(_Element):
    """A contained Medication: what ``medicationReference: "#id"`` points at."""

    resourceType: Literal["Medication"]
    id: Id | None = None
    code: CodeableConcept | None = None

    @classmethod
    def get_resource_type(cls) -> str:
        return "Medication"


class ContainedResource(_Element):
    """Any other contained resource: the engine looks only at its type."""

    resourceType: Any = None

    def get_resource_type(self) -> str:
        return str(self.resourceType or "Resource")


def _contained_kind(value: Any) -> str:
    resource_type = value.get("resourceType") if isinstance(value, dict) else None
    return "Medication" if resource_type == "Medication" else "other"


Contained = Annotated[
    Annotated[Medication, Tag("Medication")] | Annotated[ContainedResource, Tag("other")],
    Discriminator(_contained_kind),
]


class MedicationAdministrationDosage(_Element):
    dose: Quantity | None = None


class MedicationAdministration(_Resource):
    resource_type: ClassVar[str] = "MedicationAdministration"
    choices: ClassVar[_Choices] = _Choices(
        ("effective", ("effectiveDateTime", "effectivePeriod"), True),
        ("medication", ("medicationCodeableConcept", "medicationReference"), True),
        status=True,
    )

    resourceType: Literal["MedicationAdministration"] | None = None
    contained: list[Contained] | None = None
    status: Code | None = None  # required: see _check_choices
    medicationCodeableConcept: CodeableConcept | None = None
    medicationReference: Reference | None = None
    subject: Reference | None  # required, but null passes, as in R4B
    effectiveDateTime: DateTime | None = None
    effectivePeriod: Period | None = None
    dosage: MedicationAdministrationDosage | None = None


class Procedure(_Resource):
    resource_type: ClassVar[str] = "Procedure"
    choices: ClassVar[_Choices] = _Choices(
        (
            "performed",
            ("performedAge", "performedDateTime", "performedPeriod", "performedRange", "performedString"),
            False,
        ),
        status=True,
    )

    resourceType: Literal["Procedure"] | None = None
    status: Code | None = None  # required: see _check_choices
    code: CodeableConcept | None = None
    subject: Reference | None  # required, but null passes, as in R4B
    performedDateTime: DateTime | None = None
    performedPeriod: Period | None = None


_MODELS: dict[str, type[_Resource]] = {
    model.resource_type: model for model in (Observation, MedicationAdministration, Procedure)
}


def model_for(resource_type: str) -> type[_Resource] | None:
    """The lean model of a mapped resource type (None: the engine does not map it)."""
    return _MODELS.get(resource_type)
