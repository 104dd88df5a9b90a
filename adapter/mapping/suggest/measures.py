"""What a result's unit and values say about a concept a name has put forward.

The unit is read the way the engine reads it (the site's ``[units]``
spellings first, then ``adapter.mapping.units``) and must be convertible to
the concept's canonical unit, the molar mass included (µmol/L is creatinine,
never ALT).  A unit of another dimension rules the concept out: a ``%``
beside ``WBC`` is a differential, ``mmol/L`` beside ``ALT`` is a typing slip
in the name or another analyte.  A unit the adapter cannot read says
nothing either way.

Values are compared with the concept's plausible range after conversion to
its canonical unit; without a unit they are taken as already in it.  The
ranges are wide (ALT 1–20000 U/L), so values inside them are weak
evidence and values mostly outside are strong evidence against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from adapter.mapping import catalog as catalog_mod
from adapter.mapping import units

_UNIT_SHOWN = 24  # a longer unit spelling is shown as its UCUM code


@dataclass(frozen=True, slots=True)
class UnitFit:
    """How a unit fits a concept: ``fits`` True/False, or None when it says nothing."""

    sent: bool  # whether the result had a unit at all
    fits: bool | None
    ucum: str | None  # the unit in UCUM, when it could be read
    evidence: str | None


def _owner(label: str) -> str:
    """``label`` as the owner in a sentence: ALT's, platelets'."""
    return f"{label}'" if label.endswith("s") else f"{label}'s"


def _shown(unit: str, ucum: str | None) -> str:
    stripped = unit.strip()
    return stripped if len(stripped) <= _UNIT_SHOWN or ucum is None else ucum


def unit_fit(
    catalog: catalog_mod.Catalog, concept: catalog_mod.Concept, label: str, unit: str | None
) -> UnitFit:
    """Whether ``unit`` can be the unit of ``concept`` (see the module docstring)."""
    canonical = concept.spec.unit
    sent = unit is not None and bool(unit.strip())
    if canonical is None or unit is None or not sent:
        return UnitFit(sent=sent, fits=None, ucum=None, evidence=None)
    try:
        ucum = catalog.ucum(unit)
    except units.UnknownUnit:
        return UnitFit(
            sent=True,
            fits=None,
            ucum=None,
            evidence="the unit is not one the adapter reads, so it is no evidence",
        )
    try:
        units.convert(1.0, ucum, canonical, molar_mass=concept.spec.molar_mass)
    except units.NotConvertible:
        return UnitFit(
            sent=True,
            fits=False,
            ucum=ucum,
            evidence=f"unit {_shown(unit, ucum)} cannot be {_owner(label)} canonical unit {canonical}",
        )
    except units.UnknownUnit:  # a canonical unit the converter cannot read ({score}): no evidence
        return UnitFit(sent=True, fits=None, ucum=ucum, evidence=None)
    relation = "fits" if ucum == canonical else "converts to"
    return UnitFit(
        sent=True,
        fits=True,
        ucum=ucum,
        evidence=f"unit {_shown(unit, ucum)} {relation} {_owner(label)} canonical unit {canonical}",
    )


@dataclass(frozen=True, slots=True)
class ValuesFit:
    """How many values fall inside the concept's plausible range."""

    inside: int
    total: int
    evidence: str

    @property
    def share(self) -> float:
        return self.inside / self.total


def values_fit(
    concept: catalog_mod.Concept, label: str, values: Sequence[float], fit: UnitFit
) -> ValuesFit | None:
    """The values against the plausible range, in the canonical unit; None when they say nothing.

    ``fit`` is the unit's fit: values in a unit that cannot be read say
    nothing, values without a unit are taken as in the canonical unit.
    """
    spec = concept.spec
    finite = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    if spec.plausible is None or spec.unit is None or not finite:
        return None
    if fit.fits and fit.ucum is not None:
        converted = [units.convert(v, fit.ucum, spec.unit, molar_mass=spec.molar_mass) for v in finite]
        assumed = ""
    elif not fit.sent:
        converted = finite
        assumed = f", taking them as {spec.unit} (no unit was sent)"
    else:  # a unit that cannot be read, or cannot be this concept's
        return None
    low, high = spec.plausible
    inside = sum(1 for v in converted if low <= v <= high)
    where = f"{_owner(label)} plausible range {low:g}–{high:g} {spec.unit}"
    if inside == len(converted):
        sentence = f"{inside} of {len(converted)} values fall inside {where}{assumed}"
    else:
        sentence = f"only {inside} of {len(converted)} values fall inside {where}{assumed}"
    return ValuesFit(inside=inside, total=len(converted), evidence=sentence)
