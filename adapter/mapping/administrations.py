"""Medication administrations: a study-drug infusion becomes one fact with its dose and days.

The medication is named by a code, by a contained Medication, or (badly)
only by text; a text that looks like the study drug is raised as its own
issue rather than guessed.  An administration whose dose unit cannot be read
still counts as given: the fact keeps its time, and the dose problem is
raised beside it.  A dose the site recorded as ``not-done`` (a bag not
hung) raises no issue: it is kept as a fact with status ``not-done`` and no
dose, which the console shows as not given and the protocol never counts
(``not_counted.py``).
"""

from __future__ import annotations

from typing import Any

from adapter.mapping import catalog as catalog_mod
from adapter.mapping.context import MappingResult, SiteContext, Stop, fact, issue
from adapter.mapping.issues import IssueKind
from adapter.mapping.not_counted import NOT_DONE, NotCounted
from adapter.mapping.quantities import as_float, quantity_unit, to_canonical_unit
from adapter.mapping.resolve import codings, resolve_concept, subject
from adapter.mapping.status_and_period import is_withdrawn, period, usable_status, withdrawn

# https://hl7.org/fhir/R4/valueset-medication-admin-status.html: a stopped or
# on-hold infusion still ran for the time it covers.
USABLE_ADMINISTRATION = {"completed", "in-progress", "stopped", "on-hold"}


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


def map_administration(admin: Any, ref: str, source_version: str, ctx: SiteContext) -> MappingResult:
    subject_id = subject(admin, "subject", ref, ctx)
    codeable = _medication_codeable(admin)
    if is_withdrawn(admin.status):
        return withdrawn(codeable, ref, subject_id, ctx)
    if not codings(codeable):
        text = (getattr(codeable, "text", None) or "").strip()
        for concept_id, pattern in ctx.catalog.study_drug_patterns():
            if text and pattern.search(text):
                raise Stop(
                    issue(
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
            raise Stop(
                issue(
                    ctx,
                    IssueKind.UNKNOWN_CODE,
                    ref,
                    f"{ref}: the medication reference {_reference_text(admin)} cannot be resolved to a "
                    "code (the site's Medication was not found); ask the site to send the code",
                    subject_id=subject_id,
                )
            )
    concept = resolve_concept(codeable, ref, subject_id, ctx)
    if concept is None:
        return MappingResult(ignored=True)
    if str(admin.status) == NOT_DONE:
        return _not_given(admin, concept, ref, source_version, subject_id, ctx)
    status = usable_status(
        admin.status,
        USABLE_ADMINISTRATION,
        concept,
        ref,
        subject_id,
        ctx,
        record="administration",
        rule="it is not counted",
    )
    start, end = _period(admin, concept, ref, subject_id, ctx)
    result = MappingResult()
    value = original = unit = None
    dose = admin.dosage.dose if admin.dosage is not None else None
    if dose is not None and dose.value is not None and concept.spec.unit is not None:
        unit = quantity_unit(dose)
        original = f"{as_float(dose.value):g}"
        try:
            value = round(to_canonical_unit(as_float(dose.value), unit, concept, ref, subject_id, ctx), 6)
        except Stop as stop:
            # The infusion happened even if its dose unit is unreadable: keep the
            # time (infused days) and raise the dose problem as its own issue.
            result.issues.append(stop.issue)
    result.facts.append(
        fact(
            ctx,
            subject_id=subject_id,
            concept=concept,
            ref=ref,
            source_version=source_version,
            status=status,
            start=start,
            end=end,
            value=value,
            original_value=original,
            original_unit=unit,
        )
    )
    return result


def _not_given(
    admin: Any,
    concept: catalog_mod.Concept,
    ref: str,
    source_version: str,
    subject_id: str,
    ctx: SiteContext,
) -> MappingResult:
    """A dose recorded as not given: a ``not-done`` fact without a dose, never an issue.

    Without a usable time it cannot be placed on the timeline, but it is still
    no problem anyone has to solve: it stays ``not-given`` without a fact.
    """
    try:
        start, end = _period(admin, concept, ref, subject_id, ctx)
    except Stop:
        return MappingResult(not_counted=NotCounted.NOT_GIVEN)
    dose_not_given = fact(
        ctx,
        subject_id=subject_id,
        concept=concept,
        ref=ref,
        source_version=source_version,
        status=NOT_DONE,
        start=start,
        end=end,
    )
    return MappingResult(facts=[dose_not_given], not_counted=NotCounted.NOT_GIVEN)


def _period(
    admin: Any, concept: catalog_mod.Concept, ref: str, subject_id: str, ctx: SiteContext
) -> tuple[Any, Any]:
    """When the administration ran: its effective time or period (``status_and_period.period``)."""
    effective = admin.effectivePeriod
    return period(
        admin.effectiveDateTime or (effective.start if effective else None),
        effective.end if effective else None,
        concept,
        ref,
        subject_id,
        ctx,
        missing="administration has no time",
    )
