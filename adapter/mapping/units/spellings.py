"""Hospital unit spellings -> one UCUM code: ``normalize`` and ``is_known``.

Hospitals write one unit many ways (docs/terminology.md §7): Chinese LIS
feeds send ``μmol/L`` with a Greek mu, ``×10^9/L`` for blood counts and
full-width characters typed with a Chinese input method; US feeds send
``K/uL`` and ``cells/uL``; Nordic labs ``µkat/L``.  A hand-written spelling
table decides them, then the strict UCUM reader (``ucum.py``) reads real
UCUM codes.  No pint involved, so it is cheap.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from adapter.mapping.units.errors import Refusal
from adapter.mapping.units.ucum import Ucum, parse_ucum

# The tables are hand-written on purpose: they are the evidence of what sites
# actually send, not something a unit library can know.

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
#: codes, in any case, need no entry: :func:`parse_ucum` reads them.
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
def read(spelling: str) -> Ucum | Refusal:
    """Spelling -> parsed UCUM code, or a refusal.  Order matters; see the comments."""
    if not isinstance(spelling, str):
        return Refusal(unknown=repr(spelling), detail="a unit must be a string")
    if len(spelling) > _MAX_SPELLING:
        return Refusal(unknown=spelling[:_MAX_SPELLING] + "...", detail="too long to be a unit")
    folded = _fold(spelling)
    if not folded:
        return Refusal(unknown=spelling, detail="empty")
    key = folded.lower()
    # 1. spellings whose case is meaningful (G/L), 2. the lower-case alias table,
    # 3. blood-count spellings: all hand-written, all map to a UCUM code.
    target = _CASE_SENSITIVE.get(folded) or _ALIASES.get(key) or _count_code(key)
    if target is not None:
        parsed = parse_ucum(target)
        if parsed is None or parsed.code != target:  # pragma: no cover - guarded by the spelling tests
            raise AssertionError(f"spelling table maps {spelling!r} to unreadable UCUM {target!r}")
        return parsed
    # 4. a real UCUM code as written (mU/L stays milli-unit), 5. the same in lower
    # case, for LIS exports that upper-case everything (MMOL/L).  Lower-casing is
    # safe only because no two atoms in ucum._ATOMS differ by case except L/l.
    parsed = parse_ucum(folded) or parse_ucum(key)
    if parsed is not None:
        return parsed
    return Refusal(unknown=spelling, detail="not a known spelling or a UCUM code this adapter reads")


def normalize(spelling: str) -> str:
    """Return the UCUM code for a hospital unit spelling, or raise :class:`UnknownUnit`.

    ``µmol/L``, ``μmol/L``, ``umol/l`` -> ``umol/L``; ``×10^9/L``, ``10^9/L``,
    ``x10E9/L``, ``G/L`` -> ``10*9/L``; ``K/uL``, ``10^3/mm3``, ``thou/uL`` ->
    ``10*3/uL``; ``cells/uL``, ``/mm3`` -> ``/uL``; ``IU/L`` -> ``[IU]/L``;
    ``u/l`` -> ``U/L``; ``mg/dl`` -> ``mg/dL``; ``percent`` -> ``%``; ``lpm`` ->
    ``L/min``; ``mcg``, ``µg`` -> ``ug``; ``mcg/day`` -> ``ug/d``.  Any UCUM code
    built from the atoms ``ucum.py`` knows passes through in canonical form
    (``ng/ml`` -> ``ng/mL``).  Surrounding and inner whitespace is ignored.

    The result is idempotent: ``normalize(normalize(s)) == normalize(s)``.
    """
    result = read(spelling)
    if isinstance(result, Refusal):
        raise result.error()
    return result.code


def is_known(spelling: str) -> bool:
    """True if :func:`normalize` can read ``spelling``."""
    return isinstance(read(spelling), Ucum)
