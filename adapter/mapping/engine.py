"""The mapping engine: one parsed R4B resource in, facts or typed issues out.

Pure functions, no I/O: everything they need (catalog, roster lookup,
timezone) arrives in a ``SiteContext``.  The contract the rest of the
pipeline relies on (and the property tests check): every resource yields at
least one fact, or at least one issue, or is explicitly ``ignored`` because
its code is listed in the site's ``ignored_codes``.  Nothing vanishes.

Order of checks is deliberate: roster first (an off-roster patient's data
must not be looked at further), then code (an unknown code is one issue per
code, not per resource), then status, time and value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from adapter.mapping import catalog as catalog_mod
from adapter.mapping import times, units
from adapter.mapping.facts import KINDS_FOR_RESOURCE_TYPE, ConceptKind, Fact
from adapter.mapping.issues import IssueKind, MappingIssue

UCUM_SYSTEM = "http://unitsofmeasure.org"

# https://hl7.org/fhir/R4/valueset-observation-status.html
FINAL_OBSERVATION = {"final", "amended", "corrected"}
# https://hl7.org/fhir/R4/valueset-medication-admin-status.html: a stopped or
# on-hold infusion still ran for the time it covers.
USABLE_ADMINISTRATION = {"completed", "in-progress", "stopped", "on-hold"}
# https://hl7.org/fhir/R4/valueset-event-status.html
USABLE_PROCEDURE = {"completed", "in-progress"}

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


@dataclass(frozen=True)
class SiteContext:
    """What the engine needs to know about the site it maps for."""

    site: str
    timezone: ZoneInfo
    catalog: catalog_mod.Catalog
    subjects: dict[str, str]  # "Patient/<id>" -> trial subject id


@dataclass
class MappingResult:
    facts: list[Fact] = field(default_factory=list)
    issues: list[MappingIssue] = field(default_factory=list)
    ignored: bool = False


class _Stop(Exception):
    """Raised inside a mapper to end it with one issue."""

    def __init__(self, issue: MappingIssue) -> None:
        self.issue = issue


def map_resource(resource: Any, source_version: str, ctx: SiteContext) -> MappingResult:
    """Map one parsed R4B resource; see the module docstring for the contract."""
    resource_type = resource.get_resource_type()
    mapper = _MAPPERS.get(resource_type)
    ref = f"{resource_type}/{resource.id}"
    if mapper is None:
        return MappingResult(
            issues=[_issue(ctx, IssueKind.INVALID_RESOURCE, ref, f"{ref}: resource type is not mapped")]
        )
    try:
        return mapper(resource, ref, source_version, ctx)
    except _Stop as stop:
        return MappingResult(issues=[stop.issue])


# ----------------------------------------------------------------- helpers


def _issue(ctx: SiteContext, kind: IssueKind, scope: str, detail: str, **extra: Any) -> MappingIssue:
    refs = extra.pop("source_refs", None)
    if refs is None and "/" in scope and not scope.startswith(("code:", "text:")):
        refs = (scope,)
    return MappingIssue(site=ctx.site, kind=kind, scope=scope, detail=detail, source_refs=refs or (), **extra)


def _subject(resource: Any, field_name: str, ref: str, ctx: SiteContext) -> str:
    subject = getattr(resource, field_name, None)
    patient_ref = getattr(subject, "reference", None) if subject is not None else None
    if not patient_ref:
        raise _Stop(_issue(ctx, IssueKind.UNKNOWN_SUBJECT, ref, f"{ref} names no patient"))
    if patient_ref.count("/") == 1:  # the usual "Patient/<id>": nothing to trim
        tail = patient_ref
    else:
        patient_ref = patient_ref.split("/_history/")[0]
        tail = "/".join(patient_ref.rstrip("/").split("/")[-2:])  # absolute URLs -> Patient/<id>
    subject_id = ctx.subjects.get(tail)
    if subject_id is None:
        raise _Stop(
            _issue(
                ctx,
                IssueKind.PATIENT_NOT_ON_ROSTER,
                f"patient:{tail}",
                f"{tail} is not on the site roster, so its data is not used; add the patient "
                "to the roster if they are enrolled, or ignore this issue",
                source_refs=(ref,),
            )
        )
    return subject_id


def _codings(concept: Any) -> list[Any]:
    return list(getattr(concept, "coding", None) or []) if concept is not None else []


def _of_allowed_kind(
    concept: catalog_mod.Concept, ref: str, subject_id: str, ctx: SiteContext
) -> catalog_mod.Concept:
    """The concept, if the resource's type can carry its kind; else the issue that says so."""
    resource_type = ref.split("/", 1)[0]
    allowed = KINDS_FOR_RESOURCE_TYPE.get(resource_type, ())
    if concept.kind in allowed:
        return concept
    raise _Stop(
        _issue(
            ctx,
            IssueKind.WRONG_RESOURCE_TYPE,
            ref,
            f"{ref}: its code means {concept.id} (a {concept.kind.value}), which a {resource_type} "
            "cannot carry; check the site's coding, or map the code to another concept",
            subject_id=subject_id,
            concept=concept.id,
        )
    )


def _resolve_concept(
    codeable: Any, ref: str, subject_id: str, ctx: SiteContext
) -> catalog_mod.Concept | None:
    """The one concept a CodeableConcept means; None when every code is ignored."""
    cat = ctx.catalog
    codings = _codings(codeable)
    found: dict[str, catalog_mod.Concept] = {}
    ignored = False
    for coding in codings:
        concept = cat.concept_for(coding.system, coding.code)
        if concept is not None:
            found[concept.id] = concept
        elif cat.is_ignored(coding.system, coding.code):
            ignored = True
    if len(found) > 1:
        raise _Stop(
            _issue(
                ctx,
                IssueKind.AMBIGUOUS_MATCH,
                ref,
                f"{ref} carries codes for several concepts ({', '.join(sorted(found))}); "
                "fix the site's coding or the mapping",
                subject_id=subject_id,
            )
        )
    if found:
        return _of_allowed_kind(next(iter(found.values())), ref, subject_id, ctx)
    if ignored:
        return None
    if codings:
        first = codings[0]
        system = cat.canonical_system(first.system)
        code_text = f"{system}|{first.code}"
        display = first.display or getattr(codeable, "text", None) or ""
        raise _Stop(
            _issue(
                ctx,
                IssueKind.UNKNOWN_CODE,
                f"code:{code_text}",
                f"code {code_text} ({display}) is not in the catalog or the site's overrides; "
                "map it to a concept or list it under ignored_codes",
                source_refs=(ref,),
                code=code_text,
            )
        )
    text = (getattr(codeable, "text", None) or "").strip()
    raise _Stop(
        _issue(
            ctx,
            IssueKind.UNKNOWN_CODE,
            f"text:{text[:80]}",
            f"{ref} has no code, only the text {text[:80]!r}",
            source_refs=(ref,),
        )
    )


def _as_float(value: Any) -> float:
    return float(value) if isinstance(value, Decimal | int | float) else float(str(value))


def _quantity_unit(quantity: Any) -> str | None:
    """The unit of a Quantity: the UCUM code when given, else the printable unit."""
    code = getattr(quantity, "code", None)
    system = getattr(quantity, "system", None)
    if code and (system is None or system == UCUM_SYSTEM):
        return str(code)
    unit = getattr(quantity, "unit", None)
    return str(unit) if unit else (str(code) if code else None)


def _convert(
    value: float, unit: str | None, concept: catalog_mod.Concept, ref: str, subject_id: str, ctx: SiteContext
) -> float:
    """``value`` in ``unit`` to the concept's canonical unit, or an explained stop."""
    spec = concept.spec
    assert spec.unit is not None  # noqa: S101  (callers only pass concepts with a unit)
    if unit is None or not unit.strip():
        raise _Stop(
            _issue(
                ctx,
                IssueKind.UNKNOWN_UNIT,
                ref,
                f"{ref}: {concept.id} value {value:g} has no unit; expected {spec.unit}",
                subject_id=subject_id,
                concept=concept.id,
                value=f"{value:g}",
            )
        )
    try:
        ucum = ctx.catalog.ucum(unit)
    except units.UnknownUnit:
        raise _Stop(
            _issue(
                ctx,
                IssueKind.UNKNOWN_UNIT,
                ref,
                f"{ref}: unit {unit!r} of {concept.id} is not a unit the adapter can read; "
                f"add its UCUM spelling under [units] in the site override (expected {spec.unit})",
                subject_id=subject_id,
                concept=concept.id,
                unit=unit,
                value=f"{value:g}",
            )
        ) from None
    if spec.accepted_units and ucum not in spec.accepted_units:
        raise _Stop(
            _issue(
                ctx,
                IssueKind.UNIT_NOT_CONVERTIBLE,
                ref,
                f"{ref}: unit {unit!r} is not accepted for {concept.id} "
                f"(accepted: {', '.join(spec.accepted_units)})",
                subject_id=subject_id,
                concept=concept.id,
                unit=unit,
                value=f"{value:g}",
            )
        )
    try:
        return units.convert(value, ucum, spec.unit, molar_mass=spec.molar_mass)
    except units.UnitError as exc:
        raise _Stop(
            _issue(
                ctx,
                IssueKind.UNIT_NOT_CONVERTIBLE,
                ref,
                f"{ref}: cannot convert {concept.id} from {unit!r} to {spec.unit}: {exc}",
                subject_id=subject_id,
                concept=concept.id,
                unit=unit,
                value=f"{value:g}",
            )
        ) from None


def _check_plausible(
    value: float, concept: catalog_mod.Concept, ref: str, subject_id: str, ctx: SiteContext
) -> None:
    bounds = concept.spec.plausible
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise _Stop(
            _issue(
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


def _time(value: Any, ref: str, subject_id: str, concept: str, ctx: SiteContext) -> Any:
    try:
        return times.to_aware(value, ctx.timezone)
    except times.ImpreciseTime as exc:
        raise _Stop(
            _issue(ctx, IssueKind.MISSING_TIME, ref, f"{ref}: {exc}", subject_id=subject_id, concept=concept)
        ) from None


def _fact(
    ctx: SiteContext,
    *,
    subject_id: str,
    concept: catalog_mod.Concept,
    ref: str,
    source_version: str,
    status: str,
    start: Any,
    end: Any = None,
    **values: Any,
) -> Fact:
    return Fact(
        site=ctx.site,
        subject_id=subject_id,
        concept=concept.id,
        kind=concept.kind,
        unit=concept.spec.unit if values.get("value") is not None else None,
        effective_start=start,
        effective_end=end,
        local_date=times.local_date(start, ctx.timezone),
        local_end_date=times.local_date(end, ctx.timezone) if end is not None else None,
        status=status,
        source_ref=ref,
        source_version=source_version,
        catalog_version=ctx.catalog.version,
        # Always passed: pydantic deep-copies the mutable default {} for every
        # fact that leaves it out, which cost a sixth of building one.
        **{"attributes": {}, **values},
    )


# ----------------------------------------------------------------- Observation


def _map_observation(obs: Any, ref: str, source_version: str, ctx: SiteContext) -> MappingResult:
    subject_id = _subject(obs, "subject", ref, ctx)
    concept = _resolve_concept(obs.code, ref, subject_id, ctx)
    if concept is None:
        return MappingResult(ignored=True)
    status = str(obs.status)
    if status not in FINAL_OBSERVATION:
        raise _Stop(
            _issue(
                ctx,
                IssueKind.NOT_FINAL,
                ref,
                f"{ref}: {concept.id} result has status {status!r}; only final, amended or corrected "
                "results are used",
                subject_id=subject_id,
                concept=concept.id,
            )
        )
    start = _time(
        obs.effectiveDateTime
        or obs.effectiveInstant
        or (obs.effectivePeriod.start if obs.effectivePeriod else None),
        ref,
        subject_id,
        concept.id,
        ctx,
    )
    if start is None:
        raise _Stop(
            _issue(
                ctx,
                IssueKind.MISSING_TIME,
                ref,
                f"{ref}: {concept.id} result has no effective time, so it cannot be placed on the timeline",
                subject_id=subject_id,
                concept=concept.id,
            )
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
            _fact(
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
    for coding in _codings(obs.valueCodeableConcept):
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
            _fact(
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


def _absent(obs: Any, concept: catalog_mod.Concept, ref: str, subject_id: str, ctx: SiteContext) -> _Stop:
    reason = obs.dataAbsentReason
    why = ""
    if reason is not None:
        codes = [c.code for c in _codings(reason) if c.code]
        why = f" (dataAbsentReason: {reason.text or ', '.join(codes) or 'given'})"
    return _Stop(
        _issue(
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
        raw = _as_float(quantity.value)
        unit = _quantity_unit(quantity)
        comparator = str(quantity.comparator) if quantity.comparator else None
    elif obs.valueString:
        match = _NUMBER_TEXT.match(obs.valueString)
        if match is None:
            raise _Stop(
                _issue(
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
            raise _Stop(
                _issue(
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
    value = _convert(raw, unit, concept, ref, subject_id, ctx)
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
        return _as_float(obs.valueQuantity.value)
    for codeable in [obs.valueCodeableConcept, *(obs.interpretation or [])]:
        for coding in _codings(codeable):
            key = (ctx.catalog.canonical_system(coding.system), (coding.code or "").strip())
            if key in concept.answers:
                return float(concept.answers[key])
    if obs.valueString and obs.valueString.strip().isdigit():
        return float(obs.valueString.strip())
    if obs.valueCodeableConcept is not None:
        raise _Stop(
            _issue(
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
        unit = _quantity_unit(high) or value_unit
        try:
            return round(_convert(_as_float(high.value), unit, concept, ref, subject_id, ctx), 6)
        except _Stop:
            return None  # a bad reference range must not cost the value itself
    return None


def _component_attributes(obs: Any, ref: str, subject_id: str, ctx: SiteContext) -> dict[str, str]:
    """Mapped components (e.g. O2 flow beside an SpO2) as canonical-unit attributes."""
    attributes: dict[str, str] = {}
    for component in obs.component or []:
        for coding in _codings(component.code):
            concept = ctx.catalog.concept_for(coding.system, coding.code)
            if concept is None or concept.spec.unit is None or component.valueQuantity is None:
                continue
            quantity = component.valueQuantity
            if quantity.value is None:
                continue
            try:
                value = _convert(
                    _as_float(quantity.value), _quantity_unit(quantity), concept, ref, subject_id, ctx
                )
            except _Stop:
                continue
            attributes[concept.id] = f"{value:g}"
    return attributes


# ----------------------------------------------------------------- MedicationAdministration


def _medication_codeable(admin: Any) -> Any:
    if admin.medicationCodeableConcept is not None:
        return admin.medicationCodeableConcept
    reference = getattr(admin.medicationReference, "reference", None) or ""
    if reference.startswith("#"):
        for contained in admin.contained or []:
            if contained.get_resource_type() == "Medication" and contained.id == reference[1:]:
                return contained.code
    return None


def _reference_text(admin: Any) -> str:
    """The medication reference as the site wrote it: a server id, never PHI; shortened."""
    return repr(str(getattr(admin.medicationReference, "reference", None) or "(none)")[:80])


def _map_administration(admin: Any, ref: str, source_version: str, ctx: SiteContext) -> MappingResult:
    subject_id = _subject(admin, "subject", ref, ctx)
    codeable = _medication_codeable(admin)
    if not _codings(codeable):
        text = (getattr(codeable, "text", None) or "").strip()
        for concept_id, pattern in ctx.catalog.study_drug_patterns():
            if text and pattern.search(text):
                raise _Stop(
                    _issue(
                        ctx,
                        IssueKind.STUDY_DRUG_TEXT_ONLY,
                        ref,
                        f"{ref}: the medication looks like the study drug ({concept_id}) but is named only "
                        f"by text {text[:60]!r}; ask the site to send a code, or confirm it by hand",
                        subject_id=subject_id,
                        concept=concept_id,
                    )
                )
        if codeable is None:
            raise _Stop(
                _issue(
                    ctx,
                    IssueKind.UNKNOWN_CODE,
                    ref,
                    f"{ref}: the medication reference {_reference_text(admin)} cannot be resolved to a "
                    "code (the site's Medication was not found); ask the site to send the code",
                    subject_id=subject_id,
                )
            )
    concept = _resolve_concept(codeable, ref, subject_id, ctx)
    if concept is None:
        return MappingResult(ignored=True)
    status = str(admin.status)
    if status not in USABLE_ADMINISTRATION:
        raise _Stop(
            _issue(
                ctx,
                IssueKind.NOT_FINAL,
                ref,
                f"{ref}: {concept.id} administration has status {status!r}; it is not counted",
                subject_id=subject_id,
                concept=concept.id,
            )
        )
    period = admin.effectivePeriod
    start = _time(
        admin.effectiveDateTime or (period.start if period else None), ref, subject_id, concept.id, ctx
    )
    end = _time(period.end if period else None, ref, subject_id, concept.id, ctx)
    if start is None:
        raise _Stop(
            _issue(
                ctx,
                IssueKind.MISSING_TIME,
                ref,
                f"{ref}: {concept.id} administration has no time",
                subject_id=subject_id,
                concept=concept.id,
            )
        )
    result = MappingResult()
    value = original = unit = None
    dose = admin.dosage.dose if admin.dosage is not None else None
    if dose is not None and dose.value is not None and concept.spec.unit is not None:
        unit = _quantity_unit(dose)
        original = f"{_as_float(dose.value):g}"
        try:
            value = round(_convert(_as_float(dose.value), unit, concept, ref, subject_id, ctx), 6)
        except _Stop as stop:
            # The infusion happened even if its dose unit is unreadable: keep the
            # time (infused days) and raise the dose problem as its own issue.
            result.issues.append(stop.issue)
    result.facts.append(
        _fact(
            ctx,
            subject_id=subject_id,
            concept=concept,
            ref=ref,
            source_version=source_version,
            status=status,
            start=start,
            end=end if end is not None and end >= start else None,
            value=value,
            original_value=original,
            original_unit=unit,
        )
    )
    return result


# ----------------------------------------------------------------- Procedure


def _map_procedure(proc: Any, ref: str, source_version: str, ctx: SiteContext) -> MappingResult:
    subject_id = _subject(proc, "subject", ref, ctx)
    concept = _resolve_concept(proc.code, ref, subject_id, ctx)
    if concept is None:
        return MappingResult(ignored=True)
    status = str(proc.status)
    if status not in USABLE_PROCEDURE:
        raise _Stop(
            _issue(
                ctx,
                IssueKind.NOT_FINAL,
                ref,
                f"{ref}: {concept.id} procedure has status {status!r}; only completed or in-progress "
                "procedures are used",
                subject_id=subject_id,
                concept=concept.id,
            )
        )
    period = proc.performedPeriod
    start = _time(
        proc.performedDateTime or (period.start if period else None), ref, subject_id, concept.id, ctx
    )
    end = _time(period.end if period else None, ref, subject_id, concept.id, ctx)
    if start is None:
        raise _Stop(
            _issue(
                ctx,
                IssueKind.MISSING_TIME,
                ref,
                f"{ref}: {concept.id} procedure has no performed time",
                subject_id=subject_id,
                concept=concept.id,
            )
        )
    return MappingResult(
        facts=[
            _fact(
                ctx,
                subject_id=subject_id,
                concept=concept,
                ref=ref,
                source_version=source_version,
                status=status,
                start=start,
                end=end if end is not None and end >= start else None,
            )
        ]
    )


_MAPPERS = {
    "Observation": _map_observation,
    "MedicationAdministration": _map_administration,
    "Procedure": _map_procedure,
}
