"""Observations: a lab value, vital sign, score or result word becomes one fact.

A value arrives in one of several shapes (docs/terminology.md): a
valueQuantity in any unit the site writes, a number written as text in
valueString, a valueInteger, an answer code for a score, or a word
("negative") for a qualitative result.  Each becomes the concept's canonical
unit, or the typed issue that says why it cannot.
"""

from __future__ import annotations

import re
from typing import Any

from adapter.mapping import catalog as catalog_mod
from adapter.mapping.context import MappingResult, SiteContext, Stop, fact, issue
from adapter.mapping.facts import ConceptKind
from adapter.mapping.issues import IssueKind
from adapter.mapping.quantities import as_float, quantity_unit, to_canonical_unit
from adapter.mapping.resolve import codings, resolve_concept, subject
from adapter.mapping.status_and_period import is_withdrawn, period, usable_status, withdrawn

# https://hl7.org/fhir/R4/valueset-observation-status.html
FINAL_OBSERVATION = {"final", "amended", "corrected"}

# A number written as text, as LIS interfaces send it in valueString: an
# optional comparator, a decimal point or a decimal comma (European systems),
# an optional exponent ("1.2E-3"), then the unit.  "1,200" is refused as
# ambiguous (a thousands separator or a decimal comma?) rather than guessed.
_NUMBER_TEXT = re.compile(
    r"^\s*(?P<cmp><=|>=|<|>)?\s*"
    r"(?P<num>[-+]?(?:\d+(?:[.,]\d+)?|[.,]\d+)(?:[eE][-+]?\d+)?)"
    r"(?![\d.,])\s*(?P<unit>\S.*)?$"
)
_AMBIGUOUS_COMMA = re.compile(r"^[-+]?[1-9]\d{0,2},\d{3}$")


def map_observation(obs: Any, ref: str, source_version: str, ctx: SiteContext) -> MappingResult:
    subject_id = subject(obs, "subject", ref, ctx)
    if is_withdrawn(obs.status):
        return withdrawn(obs.code, ref, subject_id, ctx)
    concept = resolve_concept(obs.code, ref, subject_id, ctx)
    if concept is None:
        return MappingResult(ignored=True)
    status = usable_status(
        obs.status,
        FINAL_OBSERVATION,
        concept,
        ref,
        subject_id,
        ctx,
        record="result",
        rule="only final, amended or corrected results are used",
    )
    start, _ = period(
        obs.effectiveDateTime
        or obs.effectiveInstant
        or (obs.effectivePeriod.start if obs.effectivePeriod else None),
        None,
        concept,
        ref,
        subject_id,
        ctx,
        missing="result has no effective time, so it cannot be placed on the timeline",
    )
    qualitative = (
        _qualitative_result(obs, concept, ctx)
        if concept.spec.qualitative_text or concept.qualitative
        else None
    )
    if qualitative is not None:
        return _qualitative_fact(
            obs, qualitative, concept, ref, source_version, status, start, subject_id, ctx
        )
    if concept.kind is ConceptKind.SCORE:
        value, original, unit, comparator = _score_value(obs, concept, ref, subject_id, ctx), None, None, None
        original = f"{value:g}"
    else:
        value, original, unit, comparator = _quantity_value(obs, concept, ref, subject_id, ctx)
    _check_plausible(value, concept, ref, subject_id, ctx)
    return MappingResult(
        facts=[
            fact(
                ctx,
                subject_id=subject_id,
                concept=concept,
                ref=ref,
                source_version=source_version,
                status=status,
                start=start,
                value=round(value, 6),
                comparator=comparator,
                original_value=original,
                original_unit=unit,
                reference_high=_reference_high(obs, unit, concept, ref, subject_id, ctx),
                attributes=_component_attributes(obs, ref, subject_id, ctx),
            )
        ]
    )


def _qualitative_result(obs: Any, concept: catalog_mod.Concept, ctx: SiteContext) -> str | None:
    """ "negative", "positive", ... when the result is a word the concept lists, not a number.

    An answer code (valueCodeableConcept) is looked up in the concept's
    ``qualitative`` codes; a text (valueString, or the CodeableConcept's text)
    must start with one of its ``qualitative_text`` phrases followed by no
    other word ("Negative (<0.01 %)" is negative; "negative control failed"
    is not), longest phrase first, so "not detected" is never read as
    "detected".  A number always wins: a valueQuantity is never read here.
    """
    if obs.valueQuantity is not None:
        return None
    for coding in codings(obs.valueCodeableConcept):
        key = (ctx.catalog.canonical_system(coding.system), (coding.code or "").strip())
        if key in concept.qualitative:
            return concept.qualitative[key]
    text = obs.valueString or getattr(obs.valueCodeableConcept, "text", None)
    if not text:
        return None
    words = " ".join(str(text).lower().split())
    phrases = sorted(
        (
            (phrase.lower(), result)
            for result, listed in concept.spec.qualitative_text.items()
            for phrase in listed
        ),
        key=lambda item: -len(item[0]),
    )
    for phrase, result in phrases:
        if words.startswith(phrase) and not words[len(phrase) : len(phrase) + 1].isalnum():
            rest = words[len(phrase) :].strip(" .,;:")
            if not rest or rest.startswith("("):
                return result
    return None


def _qualitative_fact(
    obs: Any,
    result: str,
    concept: catalog_mod.Concept,
    ref: str,
    source_version: str,
    status: str,
    start: Any,
    subject_id: str,
    ctx: SiteContext,
) -> MappingResult:
    """A result reported as a word: no value, the word in ``attributes["result"]``."""
    original = obs.valueString or getattr(obs.valueCodeableConcept, "text", None) or result
    return MappingResult(
        facts=[
            fact(
                ctx,
                subject_id=subject_id,
                concept=concept,
                ref=ref,
                source_version=source_version,
                status=status,
                start=start,
                value=None,
                original_value=str(original)[:80],
                attributes={"result": result},
            )
        ]
    )


def _absent(obs: Any, concept: catalog_mod.Concept, ref: str, subject_id: str, ctx: SiteContext) -> Stop:
    reason = obs.dataAbsentReason
    why = ""
    if reason is not None:
        codes = [c.code for c in codings(reason) if c.code]
        why = f" (dataAbsentReason: {reason.text or ', '.join(codes) or 'given'})"
    return Stop(
        issue(
            ctx,
            IssueKind.MISSING_VALUE,
            ref,
            f"{ref}: {concept.id} result has no value{why}",
            subject_id=subject_id,
            concept=concept.id,
        )
    )


def _quantity_value(
    obs: Any, concept: catalog_mod.Concept, ref: str, subject_id: str, ctx: SiteContext
) -> tuple[float, str, str | None, str | None]:
    """(canonical value, original value text, original unit, comparator)."""
    if obs.valueQuantity is not None and obs.valueQuantity.value is not None:
        quantity = obs.valueQuantity
        raw = as_float(quantity.value)
        unit = quantity_unit(quantity)
        comparator = str(quantity.comparator) if quantity.comparator else None
    elif obs.valueString:
        match = _NUMBER_TEXT.match(obs.valueString)
        if match is None:
            raise Stop(
                issue(
                    ctx,
                    IssueKind.MISSING_VALUE,
                    ref,
                    f"{ref}: {concept.id} value is text that is not a number",
                    subject_id=subject_id,
                    concept=concept.id,
                )
            )
        number = match["num"]
        if _AMBIGUOUS_COMMA.match(number):
            raise Stop(
                issue(
                    ctx,
                    IssueKind.MISSING_VALUE,
                    ref,
                    f"{ref}: {concept.id} value {number!r} is ambiguous (a thousands separator or a "
                    "decimal comma?); ask the site to send a valueQuantity",
                    subject_id=subject_id,
                    concept=concept.id,
                )
            )
        raw, unit, comparator = float(number.replace(",", ".")), match["unit"], match["cmp"]
    elif obs.valueInteger is not None:
        raw, unit, comparator = float(obs.valueInteger), None, None
    else:
        raise _absent(obs, concept, ref, subject_id, ctx)
    value = to_canonical_unit(raw, unit, concept, ref, subject_id, ctx)
    return value, f"{raw:g}", unit, comparator


def _score_value(
    obs: Any, concept: catalog_mod.Concept, ref: str, subject_id: str, ctx: SiteContext
) -> float:
    """A score from valueInteger, a bare valueQuantity, or an answer code.

    mCODE puts ECOG in valueInteger with the LA answer in ``interpretation``;
    older systems send the LA code as valueCodeableConcept (docs/terminology.md §5).
    """
    if obs.valueInteger is not None:
        return float(obs.valueInteger)
    if obs.valueQuantity is not None and obs.valueQuantity.value is not None:
        return as_float(obs.valueQuantity.value)
    for codeable in [obs.valueCodeableConcept, *(obs.interpretation or [])]:
        for coding in codings(codeable):
            key = (ctx.catalog.canonical_system(coding.system), (coding.code or "").strip())
            if key in concept.answers:
                return float(concept.answers[key])
    if obs.valueString and obs.valueString.strip().isdigit():
        return float(obs.valueString.strip())
    if obs.valueCodeableConcept is not None:
        raise Stop(
            issue(
                ctx,
                IssueKind.UNKNOWN_CODE,
                ref,
                f"{ref}: {concept.id} answer is not a known answer code",
                subject_id=subject_id,
                concept=concept.id,
            )
        )
    raise _absent(obs, concept, ref, subject_id, ctx)


def _reference_high(
    obs: Any,
    value_unit: str | None,
    concept: catalog_mod.Concept,
    ref: str,
    subject_id: str,
    ctx: SiteContext,
) -> float | None:
    """The upper reference limit in the canonical unit (the lab's own ULN)."""
    for reference in obs.referenceRange or []:
        high = reference.high
        if high is None or high.value is None:
            continue
        unit = quantity_unit(high) or value_unit
        try:
            return round(to_canonical_unit(as_float(high.value), unit, concept, ref, subject_id, ctx), 6)
        except Stop:
            return None  # a bad reference range must not cost the value itself
    return None


def _component_attributes(obs: Any, ref: str, subject_id: str, ctx: SiteContext) -> dict[str, str]:
    """Mapped components (e.g. O2 flow beside an SpO2) as canonical-unit attributes.

    A component of a catalog concept that cannot be read (no number, a coded
    or text value, a unit that does not convert) is kept as ``UNREADABLE``
    rather than dropped: the eligibility rules must know oxygen was charted,
    or a site practice for readings *without* an oxygen record would count
    it as room air.
    """
    attributes: dict[str, str] = {}
    for component in obs.component or []:
        for coding in codings(component.code):
            concept = ctx.catalog.concept_for(coding.system, coding.code)
            if concept is None or concept.spec.unit is None:
                continue
            attributes[concept.id] = _component_value(component, concept, ref, subject_id, ctx)
    return attributes


UNREADABLE = "unreadable"


def _component_value(
    component: Any, concept: catalog_mod.Concept, ref: str, subject_id: str, ctx: SiteContext
) -> str:
    quantity = component.valueQuantity
    if quantity is None or quantity.value is None:
        return UNREADABLE
    try:
        value = to_canonical_unit(
            as_float(quantity.value), quantity_unit(quantity), concept, ref, subject_id, ctx
        )
    except Stop:
        return UNREADABLE
    return f"{value:g}"


def _check_plausible(
    value: float, concept: catalog_mod.Concept, ref: str, subject_id: str, ctx: SiteContext
) -> None:
    bounds = concept.spec.plausible
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise Stop(
            issue(
                ctx,
                IssueKind.IMPLAUSIBLE_VALUE,
                ref,
                f"{ref}: {concept.id} {value:g} {concept.spec.unit or ''} is outside the plausible "
                f"range {bounds[0]:g}-{bounds[1]:g}; check the source value and its unit",
                subject_id=subject_id,
                concept=concept.id,
                value=f"{value:g}",
            )
        )
