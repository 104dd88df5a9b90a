"""Hand-written timelines for the protocol stage: a small fact factory.

Times are written as ISO strings with an offset; the site is in UTC+08:00, so
``local_date`` is the calendar day at the site whatever offset the source
used (``2025-03-01T15:30Z`` is 23:30 local on 1 March).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from adapter.mapping.facts import ConceptKind, Fact
from adapter.protocol import rules as rules_mod
from adapter.protocol.context import SubjectContext

MAPPING_DIR = Path(__file__).resolve().parents[2] / "mappings" / "nct06507514"
SITE = "demo-east"
SITE_TZ = dt.timezone(dt.timedelta(hours=8))
SUBJECT = SubjectContext(
    study="NCT06507514",
    site=SITE,
    subject_id="S-001",
    enrolment_date=dt.date(2025, 3, 1),
    catalog_version="catalog-test",
)

_KINDS = {
    "blinatumomab": ConceptKind.MEDICATION,
    "mobilization": ConceptKind.MEDICATION,
    "apheresis": ConceptKind.PROCEDURE,
    "auto_hsct": ConceptKind.PROCEDURE,
    "echocardiogram": ConceptKind.PROCEDURE,
    "ecog": ConceptKind.SCORE,
    "dyspnea_grade": ConceptKind.SCORE,
    "spo2": ConceptKind.VITAL,
    "oxygen_flow": ConceptKind.VITAL,
    "fio2": ConceptKind.VITAL,
}
_UNITS = {
    "lvef": "%",
    "creatinine": "mg/dL",
    "alt": "U/L",
    "ast": "U/L",
    "bilirubin_total": "mg/dL",
    "spo2": "%",
    "oxygen_flow": "L/min",
    "fio2": "%",
    "ecog": "{score}",
    "dyspnea_grade": "{grade}",
    "wbc": "10*9/L",
    "platelets": "10*9/L",
    "mrd_flow": "%",
    "mrd_ngs": "%",
    "blinatumomab": "ug",
}
_RESOURCES = {
    ConceptKind.MEDICATION: "MedicationAdministration",
    ConceptKind.PROCEDURE: "Procedure",
}


def when(text: str | dt.datetime) -> dt.datetime:
    """An aware datetime; a bare date means local midnight at the site."""
    if isinstance(text, dt.datetime):
        return text
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=SITE_TZ)


def fact(
    concept: str,
    at: str | dt.datetime,
    value: float | None = None,
    *,
    end: str | dt.datetime | None = None,
    ref: str | None = None,
    status: str | None = None,
    comparator: str | None = None,
    reference_high: float | None = None,
    attributes: dict[str, str] | None = None,
    subject: SubjectContext = SUBJECT,
) -> Fact:
    """One fact as the mapping stage would hand it over."""
    kind = _KINDS.get(concept, ConceptKind.LAB)
    start = when(at)
    finish = when(end) if end is not None else None
    resource = _RESOURCES.get(kind, "Observation")
    default_status = "completed" if kind in _RESOURCES else "final"
    return Fact(
        site=subject.site,
        subject_id=subject.subject_id,
        concept=concept,
        kind=kind,
        value=value,
        unit=_UNITS.get(concept) if value is not None else None,
        comparator=comparator,
        effective_start=start,
        effective_end=finish,
        local_date=start.astimezone(SITE_TZ).date(),
        local_end_date=finish.astimezone(SITE_TZ).date() if finish is not None else None,
        status=status or default_status,
        reference_high=reference_high,
        source_ref=ref or f"{resource}/{concept}-{start.astimezone(dt.UTC):%Y%m%dT%H%M}",
        source_version="1",
        catalog_version="catalog-test",
        attributes=attributes or {},
    )


def bag(start: str, end: str | None, dose: float | None = 28.0, ref: str | None = None) -> Fact:
    """A blinatumomab administration (a bag, or a point when ``end`` is None)."""
    return fact("blinatumomab", start, dose, end=end, ref=ref)


def daily_bags(first: dt.date, days: int, *, hour: int = 8, dose: float | None = 28.0) -> list[Fact]:
    """A continuous infusion with the bag changed every day at ``hour`` local."""
    out = []
    for n in range(days):
        start = dt.datetime.combine(first + dt.timedelta(days=n), dt.time(hour), SITE_TZ)
        out.append(fact("blinatumomab", start, dose, end=start + dt.timedelta(days=1)))
    return out


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


@pytest.fixture(scope="session")
def rules() -> rules_mod.ProtocolRules:
    """The study's real rules files: the tests also prove they load."""
    return rules_mod.load_rules(MAPPING_DIR)


def tuned(rules: rules_mod.ProtocolRules, section: str, **changes: Any) -> rules_mod.ProtocolRules:
    """The rules with some keys of one section changed (``eligibility.screening`` style)."""
    data = rules.model_dump()
    target = data
    for part in section.split("."):
        target = target[part]
    target.update(changes)
    return rules_mod.ProtocolRules.model_validate(data)
