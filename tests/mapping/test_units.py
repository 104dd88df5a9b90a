"""Tests for adapter.mapping.units: spellings sites send and conversions (docs/terminology.md §7, §6)."""

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.mapping import units
from adapter.mapping.units import conversion, spellings

# --- normalize -------------------------------------------------------------

SPELLINGS: list[tuple[str, str]] = [
    # micro sign (U+00B5), Greek mu (U+03BC), ASCII, lower-case litre
    ("µmol/L", "umol/L"),
    ("μmol/L", "umol/L"),
    ("umol/l", "umol/L"),
    ("umol/L", "umol/L"),
    ("UMOL/L", "umol/L"),
    ("mmol/L", "mmol/L"),
    ("MMOL/L", "mmol/L"),
    # blood counts, per 10^9/L
    ("x10^9/L", "10*9/L"),
    ("×10^9/L", "10*9/L"),
    ("10^9/L", "10*9/L"),
    ("10*9/L", "10*9/L"),
    ("x10E9/L", "10*9/L"),
    ("10e9/l", "10*9/L"),
    ("G/L", "10*9/L"),
    ("×10⁹/L", "10*9/L"),
    (" x 10^9 / L ", "10*9/L"),
    # ... and per 10^3/uL
    ("K/uL", "10*3/uL"),
    ("K/µL", "10*3/uL"),
    ("K/μL", "10*3/uL"),
    ("10^3/uL", "10*3/uL"),
    ("x10^3/uL", "10*3/uL"),
    ("10^3/mm3", "10*3/uL"),
    ("10^3/mm³", "10*3/uL"),
    ("10*3/mm3", "10*3/uL"),
    ("thou/uL", "10*3/uL"),
    ("10*3/uL", "10*3/uL"),
    ("/nL", "/nL"),
    ("cells/uL", "/uL"),
    ("cells/µL", "/uL"),
    ("{cells}/uL", "/uL"),
    ("/uL", "/uL"),
    ("/mm3", "/uL"),
    ("T/L", "10*12/L"),
    # enzyme activity
    ("IU/L", "[IU]/L"),
    ("iu/l", "[IU]/L"),
    ("[IU]/L", "[IU]/L"),
    ("U/L", "U/L"),
    ("u/l", "U/L"),
    ("µkat/L", "ukat/L"),
    ("μkat/L", "ukat/L"),
    ("ukat/l", "ukat/L"),
    ("UKAT/L", "ukat/L"),
    ("ukat/L", "ukat/L"),
    # mass concentration
    ("mg/dl", "mg/dL"),
    ("mg/dL", "mg/dL"),
    ("MG/DL", "mg/dL"),
    ("Mg/dL", "mg/dL"),  # shift slip, never megagrams
    ("mg%", "mg/dL"),
    ("mg/L", "mg/L"),
    ("g/L", "g/L"),
    ("g/l", "g/L"),
    ("ng/ml", "ng/mL"),
    # fractions and percent
    ("percent", "%"),
    ("%", "%"),
    ("％", "%"),
    ("1", "1"),
    ("{fraction}", "{fraction}"),
    ("{ratio}", "{ratio}"),
    # flows
    ("L/min", "L/min"),
    ("l/min", "L/min"),
    ("lpm", "L/min"),
    ("LPM", "L/min"),
    ("mL/min", "mL/min"),
    ("ml/min", "mL/min"),
    ("mL/h", "mL/h"),
    # masses and doses
    ("mcg", "ug"),
    ("µg", "ug"),
    ("μg", "ug"),
    ("ug", "ug"),
    ("mg", "mg"),
    ("g", "g"),
    ("ug/d", "ug/d"),
    ("mcg/day", "ug/d"),
    ("µg/d", "ug/d"),
    # full-width characters from a Chinese input method
    ("ｍｇ／ｄＬ", "mg/dL"),
    ("Ｕ／Ｌ", "U/L"),
]


@pytest.mark.parametrize(("spelling", "code"), SPELLINGS)
def test_normalize(spelling: str, code: str) -> None:
    assert units.normalize(spelling) == code
    assert units.is_known(spelling)


@pytest.mark.parametrize(
    "spelling",
    [
        "",
        "   ",
        "bananas",
        "109/L",  # a lost superscript: must not become "109 per litre"
        "10/L",
        "mg dL x",
        "mg//dL",
        "mg/",
        "/",
        "mU/",
        "Gg",  # no giga prefix
        "MU/L",  # no mega prefix
        "IU",
        "x" * 100,
    ],
)
def test_normalize_rejects(spelling: str) -> None:
    with pytest.raises(units.UnknownUnit) as caught:
        units.normalize(spelling)
    assert not units.is_known(spelling)
    assert isinstance(caught.value, units.UnitError)
    assert isinstance(caught.value, ValueError)


def test_unknown_unit_carries_spelling() -> None:
    with pytest.raises(units.UnknownUnit) as caught:
        units.normalize("bananas")
    assert caught.value.unit == "bananas"


def test_case_is_meaningful_for_g_over_l() -> None:
    assert units.normalize("G/L") == "10*9/L"
    assert units.normalize("g/L") == "g/L"
    assert units.normalize("mU/L") == "mU/L"  # milli-units stay milli-units


# --- convert ---------------------------------------------------------------

CREATININE = 113.12
BILIRUBIN = 584.66

CONVERSIONS: list[tuple[float, str, str, float | None, float]] = [
    # (value, from, to, molar_mass, expected)
    (141.4, "umol/L", "mg/dL", CREATININE, 1.6),
    (141.4, "µmol/L", "mg/dL", CREATININE, 141.4 / 88.4),
    (88.4, "μmol/L", "mg/dL", CREATININE, 1.0),
    (1.6, "mg/dL", "umol/L", CREATININE, 141.4),
    (0.1414, "mmol/L", "mg/dL", CREATININE, 1.6),
    (34.2, "umol/L", "mg/dL", BILIRUBIN, 2.0),
    (17.1, "umol/L", "mg/dL", BILIRUBIN, 1.0),
    (2.0, "mg/dL", "umol/L", BILIRUBIN, 34.2),
    (16.0, "mg/L", "mg/dL", None, 1.6),
    (16.0, "mg/L", "mg/dL", CREATININE, 1.6),  # molar mass given but not needed
    (1.0, "g/L", "mg/dL", None, 100.0),
    # blood counts
    (5.2, "K/uL", "10*9/L", None, 5.2),
    (5200, "/uL", "10*9/L", None, 5.2),
    (7109, "cells/uL", "10*9/L", None, 7.109),
    (3000, "cells/uL", "x10^9/L", None, 3.0),
    (5.2, "10*3/uL", "10*9/L", None, 5.2),
    (5.2, "/nL", "10*9/L", None, 5.2),
    (5.2, "10^3/mm3", "10*9/L", None, 5.2),
    (5.2, "10*9/L", "/uL", None, 5200),
    (50, "G/L", "10*3/uL", None, 50),
    # enzyme activity
    (210, "U/L", "[IU]/L", None, 210),
    (210, "IU/L", "U/L", None, 210),
    (1, "ukat/L", "U/L", None, 60),
    (1, "µkat/L", "IU/L", None, 60),
    (120, "U/L", "ukat/L", None, 2),
    # fractions
    (0.62, "{fraction}", "%", None, 62),
    (0.62, "1", "%", None, 62),
    (0.5, "{ratio}", "%", None, 50),
    (98, "%", "{fraction}", None, 0.98),
    (98, "percent", "%", None, 98),
    # flows
    (2, "L/min", "mL/min", None, 2000),
    (500, "mL/min", "L/min", None, 0.5),
    (6, "lpm", "L/min", None, 6),
    # masses and doses
    (35, "mcg", "ug", None, 35),
    (35, "ug", "mg", None, 0.035),
    (1, "g", "mg", None, 1000),
    (28, "mcg/day", "ug/d", None, 28),
    (9, "µg/d", "mg/d", None, 0.009),
]


@pytest.mark.parametrize(("value", "from_unit", "to_unit", "molar_mass", "expected"), CONVERSIONS)
def test_convert(
    value: float, from_unit: str, to_unit: str, molar_mass: float | None, expected: float
) -> None:
    got = units.convert(value, from_unit, to_unit, molar_mass=molar_mass)
    # 0.1 %: the catalog's 88.4 and 17.1 are rounded factors (docs/terminology.md §6).
    assert got == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize(
    ("value", "from_unit", "to_unit", "expected"),
    [
        # Exact at eligibility thresholds (WBC >= 3, PLT >= 50 x10^9/L): no 2.9999999999999996.
        (3000, "/uL", "10*9/L", 3.0),
        (50000, "cells/uL", "10*9/L", 50.0),
        (7109, "cells/uL", "10*9/L", 7.109),
        (3.0, "10*3/mm3", "10*9/L", 3.0),
        (3.0, "K/uL", "10*9/L", 3.0),
        (0.5, "{fraction}", "%", 50.0),
        (1, "ukat/L", "U/L", 60.0),
    ],
)
def test_convert_is_exact_for_decimal_factors(
    value: float, from_unit: str, to_unit: str, expected: float
) -> None:
    assert units.convert(value, from_unit, to_unit) == expected


def test_creatinine_and_bilirubin_match_catalog_factors() -> None:
    # docs/terminology.md §6: mg/dL = umol/L / 88.4 (creatinine), / 17.1 (bilirubin), within 0.1 %.
    for umol in (10.0, 53.0, 141.4, 500.0):
        got = units.convert(umol, "umol/L", "mg/dL", molar_mass=CREATININE)
        assert got == pytest.approx(umol / 88.4, rel=1e-3)
        got = units.convert(umol, "umol/L", "mg/dL", molar_mass=BILIRUBIN)
        assert got == pytest.approx(umol / 17.1, rel=1e-3)


@pytest.mark.parametrize(
    ("from_unit", "to_unit", "molar_mass", "reason_has"),
    [
        ("mg/dL", "10*9/L", None, "mass concentration"),
        ("mg/dL", "10*9/L", CREATININE, "number concentration"),
        ("umol/L", "mg/dL", None, "molar mass"),
        ("mmol/L", "mg/L", None, "molar mass"),
        ("U/L", "mg/dL", None, "catalytic activity"),
        ("%", "10*9/L", None, "pure number"),
        ("L/min", "%", None, "volume flow"),
        ("ug/d", "ug", None, "mass rate"),
        ("U/L", "umol/L", None, "cannot become"),
    ],
)
def test_not_convertible(from_unit: str, to_unit: str, molar_mass: float | None, reason_has: str) -> None:
    with pytest.raises(units.NotConvertible) as caught:
        units.convert(1.0, from_unit, to_unit, molar_mass=molar_mass)
    error = caught.value
    assert error.from_unit == units.normalize(from_unit)
    assert error.to_unit == units.normalize(to_unit)
    assert reason_has in error.reason
    assert isinstance(error, units.UnitError)


def test_not_convertible_is_raised_again_on_cached_pairs() -> None:
    for _ in range(3):
        with pytest.raises(units.NotConvertible) as caught:
            units.convert(1.0, "umol/L", "mg/dL")
        assert "molar mass" in caught.value.reason


@pytest.mark.parametrize(("from_unit", "to_unit"), [("bananas", "mg/dL"), ("mg/dL", ""), ("", "")])
def test_convert_unknown_unit(from_unit: str, to_unit: str) -> None:
    with pytest.raises(units.UnknownUnit):
        units.convert(1.0, from_unit, to_unit)


@pytest.mark.parametrize("molar_mass", [0, -113.12, math.nan, math.inf])
def test_bad_molar_mass_is_a_value_error(molar_mass: float) -> None:
    with pytest.raises(ValueError, match="molar_mass"):
        units.convert(1.0, "umol/L", "mg/dL", molar_mass=molar_mass)


def test_molar_mass_must_be_a_number() -> None:
    with pytest.raises(TypeError):
        units.convert(1.0, "umol/L", "mg/dL", molar_mass="113.12")  # type: ignore[arg-type]


def test_errors_pickle() -> None:
    unknown = pickle.loads(pickle.dumps(units.UnknownUnit("bananas", "why")))  # noqa: S301 - our own bytes
    assert (unknown.unit, str(unknown)) == ("bananas", "unknown unit 'bananas': why")
    refused = pickle.loads(pickle.dumps(units.NotConvertible("a", "b", "c")))  # noqa: S301 - our own bytes
    assert (refused.from_unit, refused.to_unit, refused.reason) == ("a", "b", "c")


def test_pint_is_consulted_once_per_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    units.convert(1.0, "umol/L", "mg/dL", molar_mass=CREATININE)  # warm

    def no_pint() -> None:
        raise AssertionError("pint consulted on a cached pair")

    monkeypatch.setattr(conversion, "_registry", no_pint)
    before = conversion._scale.cache_info()
    for value in range(1000):
        units.convert(float(value), "umol/L", "mg/dL", molar_mass=CREATININE)
    after = conversion._scale.cache_info()
    assert after.misses == before.misses
    assert after.hits - before.hits == 1000


# --- properties ------------------------------------------------------------

COMPATIBLE: list[list[str]] = [
    ["mg/dL", "mg/L", "g/L", "g/dL", "mg%"],
    ["umol/L", "µmol/L", "mmol/L"],
    ["10*9/L", "10*3/uL", "/nL", "10*3/mm3", "K/uL", "x10^9/L", "G/L", "/uL", "cells/uL", "/mm3"],
    ["U/L", "[IU]/L", "IU/L", "u/l", "ukat/L", "µkat/L"],
    ["%", "percent", "1", "{fraction}", "{ratio}"],
    ["L/min", "mL/min", "lpm", "l/min"],
    ["ug", "mg", "g", "mcg", "µg"],
    ["ug/d", "mcg/day", "mg/d"],
]
MOLAR = ["umol/L", "mmol/L", "mg/dL", "mg/L", "g/L"]
ALL_SPELLINGS = sorted({s for s, _ in SPELLINGS} | {s for group in COMPATIBLE for s in group})

values = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)
pairs = st.sampled_from(COMPATIBLE).flatmap(
    lambda group: st.tuples(st.sampled_from(group), st.sampled_from(group))
)


@given(value=values, pair=pairs)
def test_round_trip(value: float, pair: tuple[str, str]) -> None:
    a, b = pair
    back = units.convert(units.convert(value, a, b), b, a)
    assert math.isclose(back, value, rel_tol=1e-12)


@given(
    value=values,
    a=st.sampled_from(MOLAR),
    b=st.sampled_from(MOLAR),
    molar_mass=st.floats(min_value=1.0, max_value=1e5, allow_nan=False),
)
def test_round_trip_through_molar_mass(value: float, a: str, b: str, molar_mass: float) -> None:
    back = units.convert(units.convert(value, a, b, molar_mass=molar_mass), b, a, molar_mass=molar_mass)
    assert math.isclose(back, value, rel_tol=1e-12)


@given(st.sampled_from(ALL_SPELLINGS))
def test_normalize_is_idempotent(spelling: str) -> None:
    code = units.normalize(spelling)
    assert units.normalize(code) == code


UNIT_ALPHABET = "mgudLlµμ/%*^x×10369kKGTatminh{}[]IU.-⁹³ "


@given(st.one_of(st.text(max_size=12), st.text(alphabet=UNIT_ALPHABET, max_size=12)))
def test_normalize_on_anything(spelling: str) -> None:
    # Either UnknownUnit or a code that normalizes to itself; never another exception.
    try:
        code = units.normalize(spelling)
    except units.UnknownUnit:
        assert not units.is_known(spelling)
        return
    assert units.normalize(code) == code


@given(
    a=st.one_of(st.sampled_from(ALL_SPELLINGS), st.text(alphabet=UNIT_ALPHABET, max_size=10)),
    b=st.one_of(st.sampled_from(ALL_SPELLINGS), st.text(alphabet=UNIT_ALPHABET, max_size=10)),
)
def test_convert_only_raises_unit_errors(a: str, b: str) -> None:
    try:
        result = units.convert(1.0, a, b)
    except units.UnitError:
        return
    assert isinstance(result, float)


def test_non_string_is_unknown() -> None:
    with pytest.raises(units.UnknownUnit):
        units.normalize(None)  # type: ignore[arg-type]


def test_factor_out_of_float_range_is_not_convertible() -> None:
    with pytest.raises(units.NotConvertible, match="range"):
        units.convert(1.0, "10*99.10*99.10*99.10*99", "1")


@pytest.mark.parametrize(
    "target", sorted(set(spellings._ALIASES.values()) | set(spellings._CASE_SENSITIVE.values()))
)
def test_every_spelling_table_target_is_a_readable_ucum_code(target: str) -> None:
    assert units.normalize(target) == target
    units.convert(1.0, target, target)


@pytest.mark.parametrize(("spelling", "code"), [("mIU/mL", "m[IU]/mL"), ("IU/mL", "[IU]/mL")])
def test_international_units_per_millilitre(spelling: str, code: str) -> None:
    assert units.normalize(spelling) == code
    assert units.convert(1.0, "mIU/mL", "IU/mL") == pytest.approx(0.001)
