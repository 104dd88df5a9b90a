"""Protocol rules: the thresholds and windows of NCT06507514, read from TOML.

The numbers live in ``mappings/<study>/eligibility.toml`` and
``mappings/<study>/protocol.toml`` rather than in code, so a protocol
amendment is a reviewed data change and every derivation states which rule it
applied.  Loading is strict: an unknown key, a missing key or a value of the
wrong type is a :class:`RulesError` naming the file, the key and the reason,
because a silently ignored typo (``lvef_mim = 55``) would derive eligibility
with the wrong threshold.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, model_validator

ELIGIBILITY_FILE = "eligibility.toml"
PROTOCOL_FILE = "protocol.toml"

Analyte = Literal["alt", "ast"]
_M = TypeVar("_M", bound=BaseModel)


class _Section(BaseModel):
    # strict: TOML has real types, so "28" (a string) is a mistake, not a number.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class ScreeningRules(_Section):
    """Which results count for screening: the latest within the window up to the anchor."""

    window_days: int = Field(ge=0)
    anchor: Literal["enrolment", "first_infusion"]


class OrganThresholds(_Section):
    """Organ-function limits, each in the canonical unit of its concept."""

    lvef_min: float  # LVEF >= lvef_min %
    creatinine_max: float  # creatinine <= creatinine_max mg/dL
    alt_max_uln: PositiveFloat  # ALT <= alt_max_uln x ULN
    ast_max_uln: PositiveFloat  # AST <= ast_max_uln x ULN
    bilirubin_max: float  # total bilirubin <= bilirubin_max mg/dL
    spo2_above: float  # SpO2 > spo2_above % (strictly) on room air
    dyspnea_grade_max: int = Field(ge=0, le=5)  # CTCAE v5 grade
    ecog_max: int = Field(ge=0, le=5)


class RoomAirRules(_Section):
    """When an SpO2 reading counts as taken without supplemental oxygen."""

    oxygen_flow_max: float = Field(ge=0)  # L/min; room air when flow <= this (0)
    fio2_max: float = Field(ge=0, le=100)  # %; room air when FiO2 <= this (21)
    pairing_minutes: int = Field(ge=0)  # a separate O2 fact pairs with an SpO2 this close in time


class EligibilityRules(_Section):
    """Everything ``eligibility.toml`` holds.

    ``uln`` is the central upper limit of normal per analyte, used when a
    result carries no ``referenceRange.high``; ``site_uln`` holds the
    ``[uln.<site>]`` tables that override it for one site's laboratory.
    """

    screening: ScreeningRules
    thresholds: OrganThresholds
    room_air: RoomAirRules
    uln: dict[Analyte, PositiveFloat] = {}
    site_uln: dict[str, dict[Analyte, PositiveFloat]] = {}

    @model_validator(mode="before")
    @classmethod
    def _split_site_tables(cls, data: Any) -> Any:
        """In TOML, ``[uln.<site>]`` tables sit inside ``[uln]`` beside the central values."""
        if not isinstance(data, dict) or not isinstance(data.get("uln"), dict):
            return data
        central = {k: v for k, v in data["uln"].items() if not isinstance(v, dict)}
        sites = {k: v for k, v in data["uln"].items() if isinstance(v, dict)}
        if not sites:
            return data
        return {**data, "uln": central, "site_uln": {**data.get("site_uln", {}), **sites}}

    def uln_for(self, analyte: Analyte, site: str) -> float | None:
        """The configured ULN for one site: its own table first, then the central value."""
        site_value = self.site_uln.get(site, {}).get(analyte)
        return site_value if site_value is not None else self.uln.get(analyte)


class CycleRules(_Section):
    """How blinatumomab administrations group into cycles, and what gets flagged."""

    gap_days: int = Field(ge=0)  # a gap LONGER than this starts a new cycle
    max_infused_days: int = Field(ge=1)  # flag a cycle with more infused days than this
    interruption_days: int = Field(ge=0)  # flag an internal gap longer than this
    maintenance_cycles: int = Field(ge=0)  # maintenance cycles the protocol allows


class CollectionRules(_Section):
    """Apheresis is expected this many days after the pre-transplant cycle ends."""

    window_min_days: int
    window_max_days: int

    @model_validator(mode="after")
    def _ordered(self) -> CollectionRules:
        if self.window_min_days > self.window_max_days:
            raise ValueError("window_min_days must not be greater than window_max_days")
        return self


class ReconstitutionRules(_Section):
    """Counts that mark reconstitution after auto-HSCT, in 10*9/L."""

    wbc_min: float = Field(ge=0)
    plt_min: float = Field(ge=0)
    max_days_apart: int = Field(ge=0)  # 0: WBC and PLT from the same local day


class _ProtocolFile(_Section):
    cycles: CycleRules
    collection: CollectionRules
    reconstitution: ReconstitutionRules


class ProtocolRules(_Section):
    """All protocol rules for one study, optionally bound to one site.

    ``site`` is set when the rules were loaded for a site; deriving a subject
    of another site with them is refused (see ``derive.derive_subject``).
    """

    eligibility: EligibilityRules
    cycles: CycleRules
    collection: CollectionRules
    reconstitution: ReconstitutionRules
    site: str | None = None


class RulesError(ValueError):
    """A rules file is missing, is not TOML, or holds a wrong key or value.

    ``problems`` lists ``(key, reason)`` pairs; the message names the file
    and every problem, so the fix is clear without reading code.
    """

    def __init__(self, file: Path, problems: list[tuple[str, str]]) -> None:
        self.file = file
        self.problems = problems
        lines = [f"{file}: {key}: {reason}" for key, reason in problems]
        super().__init__("\n".join(lines))


def load_rules(mapping_dir: Path, site: str | None = None) -> ProtocolRules:
    """Read ``eligibility.toml`` and ``protocol.toml`` from a study's mapping folder.

    With ``site``, the rules are bound to that site: its ``[uln.<site>]``
    table applies and the rules refuse subjects of other sites.
    """
    eligibility_path = mapping_dir / ELIGIBILITY_FILE
    protocol_path = mapping_dir / PROTOCOL_FILE
    eligibility = _validate(EligibilityRules, eligibility_path, _read_toml(eligibility_path))
    protocol = _validate(_ProtocolFile, protocol_path, _read_toml(protocol_path))
    return ProtocolRules(
        eligibility=eligibility,
        cycles=protocol.cycles,
        collection=protocol.collection,
        reconstitution=protocol.reconstitution,
        site=site,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise RulesError(path, [("(file)", "not found")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(path, [("(file)", f"not valid TOML: {exc}")]) from None


def _validate(model: type[_M], path: Path, data: dict[str, Any]) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RulesError(path, [_problem(error) for error in exc.errors()]) from None


def _problem(error: Any) -> tuple[str, str]:
    """One pydantic error as (TOML key, reason)."""
    # pydantic marks a bad dict key with a "[key]" location part; the key itself is named before it.
    location = [str(part) for part in error["loc"] if part != "[key]"]
    if location and location[0] == "site_uln":
        location[0] = "uln"  # the user wrote [uln.<site>]; name it that way
    key = ".".join(location) or "(top level)"
    reason = str(error["msg"])
    if error["type"] == "missing":
        reason = "required key is missing"
    elif error["type"] == "extra_forbidden":
        reason = "unknown key (check the spelling)"
    elif "input" in error and not isinstance(error["input"], dict):
        reason = f"{reason} (got {error['input']!r})"
    return key, reason
