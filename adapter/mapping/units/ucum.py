"""A strict reader for the subset of UCUM codes lab results use (https://ucum.org/ucum).

Atoms with optional prefix and exponent, "." and "/", a leading "/",
"10*n" / "10^n", {annotations} (which mean 1), and "1" on its own.  No
parentheses and no bare integer factors (they are where "109/L" would sneak
in).

Only the SI prefixes labs use are known (k c d m u n p f).  Mega, giga and
tera are left out on purpose: ``Mg/dL`` is a shift-key slip for ``mg/dL``,
never megagrams, and ``G/L`` (French/German labs) means 10^9 cells per
litre, never gigagrams.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
class Ucum:
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


def parse_ucum(code: str) -> Ucum | None:
    """Read ``code`` as a UCUM code (case-sensitive), or return None.

    UCUM's "/" and "." are left-associative (``a/b.c`` is ``(a/b).c``), so each
    operator only sets the sign of the exponent of the next component.
    """
    if code == "1":
        return Ucum("1", ())
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
    return Ucum("".join(parts), tuple(factors))
