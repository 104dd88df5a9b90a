"""What a demo site profile is: how one hospital codes the same clinical facts.

The two hospitals themselves are in :mod:`.sites`; everything that differs
between them is a field here, so the timeline builders never test a site name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from adapter.demo.generator.vocabulary import Json


@dataclass(frozen=True)
class LabCode:
    """How one site codes one Observation concept.

    Values are generated in the protocol's canonical unit (mg/dL, U/L,
    10^9/L, %) and converted here with ``factor`` so that both sites tell the
    same clinical story in their own units.
    """

    codings: tuple[Json, ...]
    text: str
    category: str
    unit: str | None = None
    ucum: str | None = None
    factor: float = 1.0
    decimals: int = 2
    # demo-east: a LOINC coding sent beside the local one on about half of
    # the results, as Chinese LIS systems that are half-way through a LOINC
    # mapping project do.
    loinc_beside: Json | None = None


@dataclass(frozen=True)
class SiteProfile:
    """Everything that differs between the two demo hospitals."""

    name: str
    letter: str
    patient_prefix: str
    mrn_system: str
    mrn_prefix: str
    mrn_digits: int
    utc_offset: Callable[[datetime], timedelta]
    labs: Mapping[str, LabCode]
    uln: Mapping[str, float]
    study_drug: Json
    study_drug_text_only: str
    gcsf: Json
    procedures: Mapping[str, Json]
    dose_in_mg_share: float
    failed_criterion: str
    # Minutes after local midnight of the screening day for the one panel
    # drawn close to midnight (negative: the evening before).
    midnight_draw_minutes: int
    ecog_as_answer_share: float
    # Roles handed out to roster patients; a role listed twice goes to two
    # patients.  Messes not listed for a site are planted at the other one.
    roles: tuple[str, ...]
    family_names: tuple[str, ...]
    given_names: Mapping[str, tuple[str, ...]]
    name_as_text: bool
