"""Who and what a resource is about: its roster subject and its one catalog concept.

Every mapper starts with these two steps, in this order: roster first (an
off-roster patient's data must not be looked at further), then code (an
unknown code is one issue per code, not per resource).
"""

from __future__ import annotations

from typing import Any

from adapter.mapping import catalog as catalog_mod
from adapter.mapping import triage
from adapter.mapping.context import Outside, SiteContext, Stop, issue
from adapter.mapping.facts import KINDS_FOR_RESOURCE_TYPE
from adapter.mapping.issues import IssueKind


def subject(resource: Any, field_name: str, ref: str, ctx: SiteContext) -> str:
    """The trial subject id of the patient ``resource.<field_name>`` names, or the issue why not."""
    named = getattr(resource, field_name, None)
    patient_ref = getattr(named, "reference", None) if named is not None else None
    if not patient_ref:
        raise Stop(issue(ctx, IssueKind.UNKNOWN_SUBJECT, ref, f"{ref} names no patient"))
    if patient_ref.count("/") == 1:  # the usual "Patient/<id>": nothing to trim
        tail = patient_ref
    else:
        patient_ref = patient_ref.split("/_history/")[0]
        tail = "/".join(patient_ref.rstrip("/").split("/")[-2:])  # absolute URLs -> Patient/<id>
    subject_id = ctx.subjects.get(tail)
    if subject_id is None:
        raise Stop(
            issue(
                ctx,
                IssueKind.PATIENT_NOT_ON_ROSTER,
                f"patient:{tail}",
                f"{tail} is not on the site roster, so its data is not used; add the patient "
                "to the roster if they are enrolled, or ignore this issue",
                source_refs=(ref,),
            )
        )
    return subject_id


def codings(concept: Any) -> list[Any]:
    """The codings of a CodeableConcept (none for a missing one)."""
    return list(getattr(concept, "coding", None) or []) if concept is not None else []


def _of_allowed_kind(
    concept: catalog_mod.Concept, ref: str, subject_id: str, ctx: SiteContext
) -> catalog_mod.Concept:
    """The concept, if the resource's type can carry its kind; else the issue that says so."""
    resource_type = ref.split("/", 1)[0]
    allowed = KINDS_FOR_RESOURCE_TYPE.get(resource_type, ())
    if concept.kind in allowed:
        return concept
    raise Stop(
        issue(
            ctx,
            IssueKind.WRONG_RESOURCE_TYPE,
            ref,
            f"{ref}: its code means {concept.id} (a {concept.kind.value}), which a {resource_type} "
            "cannot carry; check the site's coding, or map the code to another concept",
            subject_id=subject_id,
            concept=concept.id,
        )
    )


def resolve_concept(codeable: Any, ref: str, subject_id: str, ctx: SiteContext) -> catalog_mod.Concept | None:
    """The one concept a CodeableConcept means; None when every code is ignored.

    Raises ``Outside`` when its codes are standard codes outside the protocol
    (``triage``), ``Stop`` with an ``unknown_code`` issue for other unknown codes.
    """
    cat = ctx.catalog
    found_codings = codings(codeable)
    found: dict[str, catalog_mod.Concept] = {}
    ignored = False
    for coding in found_codings:
        concept = cat.concept_for(coding.system, coding.code)
        if concept is not None:
            found[concept.id] = concept
        elif cat.is_ignored(coding.system, coding.code):
            ignored = True
    if len(found) > 1:
        raise Stop(
            issue(
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
    if found_codings:
        outside = triage.outside_protocol(cat, found_codings, getattr(codeable, "text", None))
        if outside is not None:
            raise Outside(outside)
        first = found_codings[0]
        system = cat.canonical_system(first.system)
        code_text = f"{system}|{first.code}"
        display = first.display or getattr(codeable, "text", None) or ""
        raise Stop(
            issue(
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
    raise Stop(
        issue(
            ctx,
            IssueKind.UNKNOWN_CODE,
            f"text:{text[:80]}",
            f"{ref} has no code, only the text {text[:80]!r}",
            source_refs=(ref,),
        )
    )
