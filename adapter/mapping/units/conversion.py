"""Unit conversion: the dimensional arithmetic is pint's, on a small registry of UCUM atoms.

The only analyte-specific step is the molar mass, which turns amount of
substance into mass (creatinine 113.12 g/mol, bilirubin 584.66 g/mol,
docs/terminology.md §6).  Every lab value passes through :func:`convert`, so
pint is consulted once per ``(from_unit, to_unit, molar_mass)`` and the
result is cached: the hot path is one ``lru_cache`` dict lookup, a multiply
and a divide.  Factors are computed with exact fractions (pint's
``non_int_type=Fraction``) so that ``10*3/mm3 -> 10*3/uL`` is exactly 1 and
``/uL -> 10*9/L`` is exactly "divide by 1000": a WBC of 3000 /uL is 3.0
x10^9/L, not 2.9999999999999996, which matters for a ``>= 3`` eligibility
threshold.

Blood counts carry no count dimension: as in UCUM, ``10*9/L`` is the pure
number 10^9 per litre, so ``/nL``, ``10*3/uL`` and ``cells/uL`` (an
annotation, dropped) are all the same kind of quantity.  A separate
``[count]`` dimension would make ``/nL`` incompatible with ``10*9/L`` unless
we guessed which codes count cells.  ``10*`` itself is the registry unit
``ten`` (= 10), so the powers of ten are pint's arithmetic, not ours.
"""

from __future__ import annotations

import functools
import math
import threading
from fractions import Fraction
from typing import TYPE_CHECKING, cast

from adapter.mapping.units.errors import Refusal
from adapter.mapping.units.spellings import read
from adapter.mapping.units.ucum import Ucum

if TYPE_CHECKING:
    import pint

#: The registry, in pint's definition syntax.  Factors are exact decimals and
#: pint computes in fractions (see the module docstring).
_REGISTRY_DEFINITIONS = """
meter = [length] = m
gram = [mass] = g
second = [time] = s
mole = [substance] = mol
kilo- = 1e3 = k-
deci- = 1e-1 = d-
centi- = 1e-2 = c-
milli- = 1e-3 = m-
micro- = 1e-6 = u-
nano- = 1e-9 = n-
pico- = 1e-12 = p-
femto- = 1e-15 = f-
liter = decimeter ** 3 = L
minute = 60 * second = min
hour = 60 * minute = h
day = 24 * hour = d
percent = 0.01
ten = 10
katal = mole / second = kat
enzyme_unit = micromole / minute = U
international_unit = enzyme_unit = IU
"""
# On the last line: UCUM makes [IU] an arbitrary unit, commensurable with
# nothing, because an IU is defined per substance by a WHO reference
# preparation.  For enzyme activity, labs report U/L and [IU]/L for the same
# number (docs/terminology.md §6: the PROTECT-CHILD IG codes an ALT of
# "210 U/L" as UCUM "[IU]/L"), and every IU-reported concept in this trial is
# an enzyme (ALT, AST), so [IU] == U here.  It would be wrong for vitamins or
# heparin.

_registry_lock = threading.Lock()
_registry_instance: pint.UnitRegistry | None = None


def _registry() -> pint.UnitRegistry:
    """The pint registry, built on first use and shared.

    pint itself is imported here too: importing it costs about 0.3 s, which
    ``normalize`` (pure string work) and commands that never convert should
    not pay.  Building the registry takes about 15 ms.
    """
    global _registry_instance
    with _registry_lock:
        if _registry_instance is None:
            import pint  # deferred on purpose, see the docstring

            registry: pint.UnitRegistry = pint.UnitRegistry(None, non_int_type=Fraction)
            for line in _REGISTRY_DEFINITIONS.strip().splitlines():
                registry.define(line)
            _registry_instance = registry
        return _registry_instance


_SUBSTANCE_PER_MASS = {"[substance]": 1, "[mass]": -1}
_MASS_PER_SUBSTANCE = {"[substance]": -1, "[mass]": 1}

#: Names for the dimensions lab units have, for messages a data manager reads.
_KINDS: dict[frozenset[tuple[str, object]], str] = {
    frozenset(): "a pure number (fraction or %)",
    frozenset({("[mass]", 1), ("[length]", -3)}): "a mass concentration",
    frozenset({("[substance]", 1), ("[length]", -3)}): "a substance concentration",
    frozenset({("[length]", -3)}): "a number concentration (count per volume)",
    frozenset({("[substance]", 1), ("[time]", -1), ("[length]", -3)}): "a catalytic activity concentration",
    frozenset({("[length]", 3), ("[time]", -1)}): "a volume flow",
    frozenset({("[mass]", 1)}): "a mass",
    frozenset({("[mass]", 1), ("[time]", -1)}): "a mass rate",
    frozenset({("[substance]", 1)}): "an amount of substance",
}


def _kind(quantity: pint.Quantity) -> str:
    dims = quantity.dimensionality  # exponents are Fractions; Fraction(1) == 1 and hashes alike
    named = _KINDS.get(frozenset(dims.items()))
    if named is not None:
        return named
    # pint cannot format Fraction exponents on Python 3.11, so format by hand.
    return " ".join(f"{name}^{exp}" for name, exp in sorted(dims.items()))


def _quantity(registry: pint.UnitRegistry, ucum: Ucum) -> pint.Quantity:
    quantity = registry.Quantity(Fraction(1), registry.dimensionless)
    for name, exponent in ucum.factors:
        quantity = quantity * registry.Unit(name) ** exponent
    return quantity


def _molar_mass(molar_mass: float) -> Fraction:
    """g/mol as the decimal the catalog wrote (113.12 -> 11312/100), not its binary approximation."""
    if isinstance(molar_mass, bool) or not isinstance(molar_mass, int | float):
        raise TypeError(f"molar_mass must be a number of g/mol, got {molar_mass!r}")
    if not math.isfinite(molar_mass) or molar_mass <= 0:
        raise ValueError(f"molar_mass must be a positive number of g/mol, got {molar_mass!r}")
    return Fraction(repr(float(molar_mass)))


_EXACT_LIMIT = 10**12


@functools.lru_cache(maxsize=8192)
def _scale(from_unit: str, to_unit: str, molar_mass: float | None) -> tuple[float, float] | Refusal:
    """(multiplier, divisor) taking values in ``from_unit`` to ``to_unit``, or a refusal.

    The exact factor n/d is kept as two floats when both are small integers,
    so ``value * n / d`` rounds once for integer-valued inputs (7109 /uL ->
    7.109, exactly the float the literal 7.109 gives).
    """
    source, target = read(from_unit), read(to_unit)
    if isinstance(source, Refusal):
        return source
    if isinstance(target, Refusal):
        return target
    if source.code == target.code:
        return (1.0, 1.0)

    def refuse(reason: str) -> Refusal:
        return Refusal(detail=reason, from_unit=source.code, to_unit=target.code)

    registry = _registry()
    from pint import DimensionalityError  # pint is loaded lazily, see _registry

    from_q, to_q = _quantity(registry, source), _quantity(registry, target)
    ratio = from_q / to_q
    dims = dict(ratio.dimensionality)
    if dims in (_SUBSTANCE_PER_MASS, _MASS_PER_SUBSTANCE):
        # The analyte-specific step: mol <-> g through the molar mass.
        if molar_mass is None:
            return refuse(
                f"{_kind(from_q)} and {_kind(to_q)} differ by mol <-> g; "
                "a molar mass (g/mol) of the analyte is needed"
            )
        grams_per_mole = registry.Quantity(_molar_mass(molar_mass), "gram / mole")
        ratio = ratio * grams_per_mole if dims == _SUBSTANCE_PER_MASS else ratio / grams_per_mole
    try:
        factor = Fraction(ratio.to(registry.dimensionless).magnitude)
    except DimensionalityError:
        return refuse(f"{_kind(from_q)} cannot become {_kind(to_q)}")
    if factor.numerator <= _EXACT_LIMIT and factor.denominator <= _EXACT_LIMIT:
        return (float(factor.numerator), float(factor.denominator))
    try:
        return (float(factor), 1.0)
    except OverflowError:
        return refuse("the conversion factor is outside the range of a float")


def convert(value: float, from_unit: str, to_unit: str, *, molar_mass: float | None = None) -> float:
    """Convert ``value`` from one unit spelling to another.

    Spellings are read as ``normalize`` reads them (``spellings.py``).
    Handled: mass and substance concentrations (mg/dL, mg/L, g/L, umol/L,
    mmol/L); mol <-> g needs
    ``molar_mass`` in g/mol (creatinine 113.12: umol/L / 88.4 = mg/dL;
    bilirubin 584.66: umol/L / 17.1 = mg/dL); blood counts (10*9/L = 10*3/uL =
    /nL = 10*3/mm3; /uL / 1000 = 10*9/L); enzyme activity (U/L = [IU]/L,
    1 ukat/L = 60 U/L); fractions ('1', '{fraction}', '{ratio}') to % (x100);
    L/min and mL/min; ug, mg, g; ug/d.

    Raises :class:`UnknownUnit` if a spelling cannot be read,
    :class:`NotConvertible` if the dimensions differ or a molar mass is
    needed and missing; ``ValueError``/``TypeError`` for a nonsensical
    ``molar_mass`` (a catalog bug, not a data issue).

    The factor for each ``(from_unit, to_unit, molar_mass)`` is computed once
    and cached; later calls are a dict lookup, a multiply and a divide.
    """
    scale = _scale(from_unit, to_unit, molar_mass)
    if type(scale) is tuple:
        return value * scale[0] / scale[1]
    raise cast(Refusal, scale).error()
