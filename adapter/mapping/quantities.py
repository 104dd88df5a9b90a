"""A FHIR Quantity read as a number in the concept's canonical unit, or the issue why not.

Lab values (Observation) and doses (MedicationAdministration) both arrive
as Quantities in whatever unit the site writes; both end up in the one unit
the catalog gives their concept (the ``units`` package does the arithmetic).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from adapter.mapping import catalog as catalog_mod
from adapter.mapping import units
from adapter.mapping.context import SiteContext, Stop, issue
from adapter.mapping.issues import IssueKind

UCUM_SYSTEM = "http://unitsofmeasure.org"


def as_float(value: Any) -> float:
    """A FHIR decimal (Decimal, int, float or its text) as a float."""
    return float(value) if isinstance(value, Decimal | int | float) else float(str(value))


def quantity_unit(quantity: Any) -> str | None:
    """The unit of a Quantity: the UCUM code when given, else the printable unit."""
    code = getattr(quantity, "code", None)
    system = getattr(quantity, "system", None)
    if code and (system is None or system == UCUM_SYSTEM):
        return str(code)
    unit = getattr(quantity, "unit", None)
    return str(unit) if unit else (str(code) if code else None)


def to_canonical_unit(
    value: float, unit: str | None, concept: catalog_mod.Concept, ref: str, subject_id: str, ctx: SiteContext
) -> float:
    """``value`` in ``unit`` to the concept's canonical unit, or an explained stop."""
    spec = concept.spec
    assert spec.unit is not None  # noqa: S101  (callers only pass concepts with a unit)
    if unit is None or not unit.strip():
        raise Stop(
            issue(
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
        raise Stop(
            issue(
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
        raise Stop(
            issue(
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
        raise Stop(
            issue(
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
