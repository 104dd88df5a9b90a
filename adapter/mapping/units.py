"""Unit normalisation and conversion for lab values: hospital spellings -> UCUM -> protocol units.

Hospitals write one unit many ways (docs/terminology.md §7): Chinese LIS
feeds send ``μmol/L`` with a Greek mu, ``×10^9/L`` for blood counts and
full-width characters typed with a Chinese input method; US feeds send
``K/uL`` and ``cells/uL``; Nordic labs ``µkat/L``.  The protocol thresholds
are in one unit per concept (docs/terminology.md §6: creatinine mg/dL,
bilirubin mg/dL, WBC/PLT 10^9/L, ALT/AST U/L, LVEF/SpO2 %, O2 flow L/min).
This module does the two steps between them:

``normalize(spelling)``
    hospital spelling -> one UCUM code (https://ucum.org/ucum), decided by a
    hand-written spelling table plus a strict reader for real UCUM codes.
    No pint involved, so it is cheap.
``convert(value, from_unit, to_unit, molar_mass=...)``
    the dimensional arithmetic is pint's, on a small registry of UCUM atoms
    (:func:`_registry`).  The only analyte-specific step is the molar mass,
    which turns amount of substance into mass (creatinine 113.12 g/mol,
    bilirubin 584.66 g/mol, docs/terminology.md §6).

Every lab value passes through :func:`convert`, so pint is consulted once
per ``(from_unit, to_unit, molar_mass)`` and the result is cached: the hot
path is one ``lru_cache`` dict lookup, a multiply and a divide.  Factors are
computed with exact fractions (pint's ``non_int_type=Fraction``) so that
``10*3/mm3 -> 10*3/uL`` is exactly 1 and ``/uL -> 10*9/L`` is exactly
"divide by 1000": a WBC of 3000 /uL is 3.0 x10^9/L, not 2.9999999999999996,
which matters for a ``>= 3`` eligibility threshold.

Deliberate departures from pure UCUM, each explained where it is made:

* ``[IU]`` is the same unit as ``U`` (:data:`_REGISTRY_DEFINITIONS`).
* Blood counts carry no count dimension: as in UCUM, ``10*9/L`` is the pure
  number 10^9 per litre, so ``/nL``, ``10*3/uL`` and ``cells/uL`` (an
  annotation, dropped) are all the same kind of quantity.  A separate
  ``[count]`` dimension would make ``/nL`` incompatible with ``10*9/L`` unless
  we guessed which codes count cells.  ``10*`` itself is the registry unit
  ``ten`` (= 10), so the powers of ten are pint's arithmetic, not ours.
* Only the SI prefixes labs use are known (k c d m u n p f).  Mega, giga and
  tera are left out on purpose: ``Mg/dL`` is a shift-key slip for ``mg/dL``,
  never megagrams, and ``G/L`` (French/German labs) means 10^9 cells per
  litre, never gigagrams.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import pint

__all__ = ["NotConvertible", "UnitError", "UnknownUnit", "convert", "is_known", "normalize"]


class UnitError(ValueError):
    """Base class of every unit problem, so mapping code can turn any of them into a MappingIssue."""


class UnknownUnit(UnitError):
    """The spelling is not one we can read at all (issue kind ``unknown_unit``)."""

    def __init__(self, unit: str, detail: str = "") -> None:
        self.unit = unit
        self.detail = detail
        message = f"unknown unit {unit!r}"
        super().__init__(f"{message}: {detail}" if detail else message)

    def __reduce__(self) -> tuple[type[UnknownUnit], tuple[str, str]]:
        return (type(self), (self.unit, self.detail))


class NotConvertible(UnitError):
    """Both units are readable but one cannot become the other (issue kind ``unit_not_convertible``).

    Either the dimensions differ (mg/dL -> 10*9/L) or the conversion needs
    a molar mass that was not given (umol/L -> mg/dL).  ``reason`` says which.
    ``from_unit`` and ``to_unit`` are the normalized UCUM codes, so one issue
    covers every spelling of the same unit pair.
    """

    def __init__(self, from_unit: str, to_unit: str, reason: str) -> None:
        self.from_unit = from_unit
        self.to_unit = to_unit
        self.reason = reason
        super().__init__(f"cannot convert {from_unit!r} to {to_unit!r}: {reason}")

    def __reduce__(self) -> tuple[type[NotConvertible], tuple[str, str, str]]:
        return (type(self), (self.from_unit, self.to_unit, self.reason))


# ---------------------------------------------------------------------------
# Spellings.  This part is hand-written on purpose: it is the evidence of what
# sites actually send, not something a unit library can know.

#: Spellings whose case carries the meaning, matched exactly before anything
#: is lower-cased.  ``G/L`` and ``T/L`` are the French/German way of writing
#: 10^9/L and 10^12/L for blood counts; ``g/L`` is grams per litre.
_CASE_SENSITIVE: dict[str, str] = {
    "G/L": "10*9/L",
    "G/l": "10*9/L",
    "T/L": "10*12/L",
    "T/l": "10*12/L",
}

#: Non-UCUM spellings, keyed in lower case (after :func:`_fold`).  Real UCUM
#: codes, in any case, need no entry: :func:`_parse_ucum` reads them.
_ALIASES: dict[str, str] = {
    # Enzyme activity.  UCUM has no bare "IU" and "U" is case-sensitive; "IU/L"
    # and "u/l" are what LIS exports print (docs/terminology.md §6, §7).
    "iu/l": "[IU]/L",
    "[iu]/l": "[IU]/L",
    "u/l": "U/L",
    "units/l": "U/L",
    "iu/ml": "[IU]/mL",
    "miu/ml": "m[IU]/mL",
    # Percent and fractions (LVEF and SpO2 from devices arrive as 0-1 fractions).
    "percent": "%",
    "pct": "%",
    "fraction": "{fraction}",
    "ratio": "{ratio}",
    # "mg%" is the old US clinical spelling of mg per 100 mL, i.e. mg/dL.
    "mg%": "mg/dL",
    # Oxygen flow (nursing charts: "鼻导管吸氧 2L/min", US devices "lpm").
    "lpm": "L/min",
    "ml/hr": "mL/h",
    # Masses and doses: "mcg" is the pharmacy spelling of ug (Blincyto 9/28 mcg/day).
    "mcg": "ug",
    "mcg/d": "ug/d",
    "mcg/day": "ug/d",
    "mcg/24h": "ug/d",
    "ug/day": "ug/d",
    "ug/24h": "ug/d",
    "mg/day": "mg/d",
    "mg/24h": "mg/d",
}

#: Blood-count spellings, matched on the lower-cased folded spelling: a count
#: prefix (``x10^9``, ``×10E9``, ``10*9``, ``K``, ``thou``, ``cells`` or nothing)
#: over a volume.  ``mm3`` and ``cumm`` are the microlitre; ``109/L`` (a lost
#: superscript) is deliberately NOT matched: it would read as 109 per litre.
_COUNT = re.compile(
    r"(?:[x*]?10(?:\^|\*\*?|e)(?P<exp>\d{1,2})|(?P<thousand>k|thou)|cells?|\{cells?\}|)"
    r"/(?P<volume>l|ml|ul|nl|mm3|cumm)"
)
_COUNT_VOLUMES = {"l": "L", "ml": "mL", "ul": "uL", "nl": "nL", "mm3": "uL", "cumm": "uL"}

_SUPERSCRIPT = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺]+")
_SUPERSCRIPT_DIGITS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")
_WHITESPACE = re.compile(r"\s+")
_CARET_EXPONENT = re.compile(r"(?<=[A-Za-z])\^(?=[+-]?\d)")
_MAX_SPELLING = 64


def _fold(spelling: str) -> str:
    """Undo the typography of a spelling, keeping its case.

    Superscript exponents become ``^n`` first (``10⁹/L`` -> ``10^9/L``, ``mm³``
    -> ``mm3``): NFKC alone would turn ``10⁹`` into ``109``.  NFKC then maps the
    full-width ``／Ｌ％`` of Chinese input methods to ASCII and the micro sign
    U+00B5 to Greek mu U+03BC, which becomes ``u`` (docs/terminology.md §7:
    ``μmol/L``).
    """
    folded = _SUPERSCRIPT.sub(lambda m: "^" + m.group().translate(_SUPERSCRIPT_DIGITS), spelling)
    folded = unicodedata.normalize("NFKC", folded).replace("μ", "u").replace("×", "x")
    folded = _WHITESPACE.sub("", folded)
    return _CARET_EXPONENT.sub("", folded)


# ---------------------------------------------------------------------------
# UCUM codes.  A strict reader for the subset of UCUM lab results use: atoms
# with optional prefix and exponent, "." and "/", a leading "/", "10*n" / "10^n",
# {annotations} (which mean 1), and "1" on its own.  No parentheses and no
# bare integer factors (they are where "109/L" would sneak in).

#: UCUM atom -> (registry unit name, takes SI prefixes).  Lower-case "l" is
#: UCUM's other litre symbol; we print it as "L".
_ATOMS: dict[str, tuple[str, bool]] = {
    "g": ("gram", True),
    "mol": ("mole", True),
    "L": ("liter", True),
    "l": ("liter", True),
    "m": ("meter", True),
    "s": ("second", True),
    "kat": ("katal", True),
    "U": ("enzyme_unit", True),
    "[IU]": ("international_unit", True),
    "min": ("minute", False),
    "h": ("hour", False),
    "d": ("day", False),
    "%": ("percent", False),
}
_PREFIXES = {
    "k": "kilo",
    "c": "centi",
    "d": "deci",
    "m": "milli",
    "u": "micro",
    "n": "nano",
    "p": "pico",
    "f": "femto",
}

_TOKEN = re.compile(
    r"(?P<op>[./])"
    r"|10[*^](?P<ten>[+-]?\d{1,2})(?![0-9])"
    r"|(?P<annotation>\{[^{}]*\})"
    r"|(?P<atom>[A-Za-z]?\[[A-Za-z]+\]|%|[A-Za-z]+)(?P<exp>[+-]?\d)?(?![0-9])(?P<atom_annotation>\{[^{}]*\})?"
)


@dataclass(frozen=True, slots=True)
class _Ucum:
    """A UCUM code we can read: its canonical spelling and its factors as (registry unit, exponent)."""

    code: str
    factors: tuple[tuple[str, int], ...]


def _resolve_atom(atom: str) -> tuple[str, str] | None:
    """UCUM atom with optional prefix -> (canonical spelling, registry unit name), or None."""
    known = _ATOMS.get(atom)
    if known is not None:
        return ("L" if atom == "l" else atom), known[0]
    prefix, rest = atom[:1], atom[1:]
    known = _ATOMS.get(rest)
    if prefix in _PREFIXES and known is not None and known[1]:
        return prefix + ("L" if rest == "l" else rest), _PREFIXES[prefix] + known[0]
    return None


def _parse_ucum(code: str) -> _Ucum | None:
    """Read ``code`` as a UCUM code (case-sensitive), or return None.

    UCUM's "/" and "." are left-associative (``a/b.c`` is ``(a/b).c``), so each
    operator only sets the sign of the exponent of the next component.
    """
    if code == "1":
        return _Ucum("1", ())
    parts: list[str] = []
    factors: list[tuple[str, int]] = []
    sign, pos, expect_operand = 1, 0, True
    if code.startswith("/"):
        sign, pos = -1, 1
        parts.append("/")
    while pos < len(code):
        match = _TOKEN.match(code, pos)
        if match is None:
            return None
        pos = match.end()
        if match["op"]:
            if expect_operand:
                return None
            sign = -1 if match["op"] == "/" else 1
            parts.append(match["op"])
            expect_operand = True
            continue
        if not expect_operand:
            return None
        expect_operand = False
        if match["ten"] is not None:
            exponent = int(match["ten"])
            factors.append(("ten", sign * exponent))
            parts.append(f"10*{exponent}")
        elif match["annotation"]:
            parts.append(match["annotation"])
        else:
            resolved = _resolve_atom(match["atom"])
            exponent = int(match["exp"] or 1)
            if resolved is None or exponent == 0:
                return None
            factors.append((resolved[1], sign * exponent))
            parts.append(resolved[0] + (match["exp"] or "") + (match["atom_annotation"] or ""))
    if expect_operand:
        return None
    return _Ucum("".join(parts), tuple(factors))


@dataclass(frozen=True, slots=True)
class _Refusal:
    """A cached "no".

    Rebuilt into a fresh exception on every call: raising one shared instance
    again and again would pile up tracebacks on it.
    """

    unknown: str | None = None
    detail: str = ""
    from_unit: str = ""
    to_unit: str = ""

    def error(self) -> UnitError:
        if self.unknown is not None:
            return UnknownUnit(self.unknown, self.detail)
        return NotConvertible(self.from_unit, self.to_unit, self.detail)


def _count_code(key: str) -> str | None:
    match = _COUNT.fullmatch(key)
    if match is None:
        return None
    if match["exp"] is not None:
        scale = f"10*{int(match['exp'])}"
    elif match["thousand"]:
        scale = "10*3"
    else:
        scale = ""
    return f"{scale}/{_COUNT_VOLUMES[match['volume']]}"


@functools.lru_cache(maxsize=4096)
def _read(spelling: str) -> _Ucum | _Refusal:
    """Spelling -> parsed UCUM code, or a refusal.  Order matters; see the comments."""
    if not isinstance(spelling, str):
        return _Refusal(unknown=repr(spelling), detail="a unit must be a string")
    if len(spelling) > _MAX_SPELLING:
        return _Refusal(unknown=spelling[:_MAX_SPELLING] + "...", detail="too long to be a unit")
    folded = _fold(spelling)
    if not folded:
        return _Refusal(unknown=spelling, detail="empty")
    key = folded.lower()
    # 1. spellings whose case is meaningful (G/L), 2. the lower-case alias table,
    # 3. blood-count spellings: all hand-written, all map to a UCUM code.
    target = _CASE_SENSITIVE.get(folded) or _ALIASES.get(key) or _count_code(key)
    if target is not None:
        parsed = _parse_ucum(target)
        if parsed is None or parsed.code != target:  # pragma: no cover - guarded by the spelling tests
            raise AssertionError(f"spelling table maps {spelling!r} to unreadable UCUM {target!r}")
        return parsed
    # 4. a real UCUM code as written (mU/L stays milli-unit), 5. the same in lower
    # case, for LIS exports that upper-case everything (MMOL/L).  Lower-casing is
    # safe only because no two atoms in _ATOMS differ by case except L/l.
    parsed = _parse_ucum(folded) or _parse_ucum(key)
    if parsed is not None:
        return parsed
    return _Refusal(unknown=spelling, detail="not a known spelling or a UCUM code this adapter reads")


def normalize(spelling: str) -> str:
    """Return the UCUM code for a hospital unit spelling, or raise :class:`UnknownUnit`.

    ``µmol/L``, ``μmol/L``, ``umol/l`` -> ``umol/L``; ``×10^9/L``, ``10^9/L``,
    ``x10E9/L``, ``G/L`` -> ``10*9/L``; ``K/uL``, ``10^3/mm3``, ``thou/uL`` ->
    ``10*3/uL``; ``cells/uL``, ``/mm3`` -> ``/uL``; ``IU/L`` -> ``[IU]/L``;
    ``u/l`` -> ``U/L``; ``mg/dl`` -> ``mg/dL``; ``percent`` -> ``%``; ``lpm`` ->
    ``L/min``; ``mcg``, ``µg`` -> ``ug``; ``mcg/day`` -> ``ug/d``.  Any UCUM code
    built from the atoms this module knows passes through in canonical form
    (``ng/ml`` -> ``ng/mL``).  Surrounding and inner whitespace is ignored.

    The result is idempotent: ``normalize(normalize(s)) == normalize(s)``.
    """
    result = _read(spelling)
    if isinstance(result, _Refusal):
        raise result.error()
    return result.code


def is_known(spelling: str) -> bool:
    """True if :func:`normalize` can read ``spelling``."""
    return isinstance(_read(spelling), _Ucum)


# ---------------------------------------------------------------------------
# pint

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


def _quantity(registry: pint.UnitRegistry, ucum: _Ucum) -> pint.Quantity:
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
def _scale(from_unit: str, to_unit: str, molar_mass: float | None) -> tuple[float, float] | _Refusal:
    """(multiplier, divisor) taking values in ``from_unit`` to ``to_unit``, or a refusal.

    The exact factor n/d is kept as two floats when both are small integers,
    so ``value * n / d`` rounds once for integer-valued inputs (7109 /uL ->
    7.109, exactly the float the literal 7.109 gives).
    """
    source, target = _read(from_unit), _read(to_unit)
    if isinstance(source, _Refusal):
        return source
    if isinstance(target, _Refusal):
        return target
    if source.code == target.code:
        return (1.0, 1.0)

    def refuse(reason: str) -> _Refusal:
        return _Refusal(detail=reason, from_unit=source.code, to_unit=target.code)

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

    Spellings go through :func:`normalize` first.  Handled: mass and substance
    concentrations (mg/dL, mg/L, g/L, umol/L, mmol/L); mol <-> g needs
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
    raise cast(_Refusal, scale).error()
