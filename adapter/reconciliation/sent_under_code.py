"""What a site sent under an unknown code: the names, unit and values of the results behind an issue.

A suggestion for an ``unknown_code`` issue (``suggestions``) weighs what the
site actually sent, not only the one display the issue's detail quotes.
This reads it from the stored sources raising the issue (``IssueSource`` →
``SourceResource.raw``, the minimised body the state keeps), at most
``SOURCES_READ`` of them in the order of their references, so a code sent
a million times costs what one sent fifty times does:

- the names: the display of each coding with the issue's code, and the
  text of each source's concept, counted;
- the values of a ``valueQuantity`` (or a dose), each with its unit read
  the way the engine reads one (the UCUM code first), and a
  ``valueInteger`` without a unit;
- the resource types, which say what kind of concept can be meant.

A body the adapter did not keep (a patient off the roster) or cannot read
adds nothing; nothing here raises on what a site sent.  Only names, units,
numbers and counts come out: never a patient, a subject or a reference.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.mapping import catalog as catalog_mod
from adapter.store import models

SOURCES_READ = 50  # sources read per issue: enough to see the unit and the values, bounded per page
_UCUM = "http://unitsofmeasure.org"


@dataclass
class SentUnderCode:
    """What the sources behind one issue carried under its code."""

    names: Counter[str] = field(default_factory=Counter)
    resource_types: set[str] = field(default_factory=set)
    units: Counter[str | None] = field(default_factory=Counter)  # None: a value without a unit
    values: dict[str | None, list[float]] = field(default_factory=dict)
    read: int = 0  # sources asked for
    total: int = 0  # sources raising the issue

    def unit(self) -> str | None:
        """The unit most results were sent in (None: no unit, or no value at all)."""
        return self.units.most_common(1)[0][0] if self.units else None

    def notes(self) -> list[str]:
        """Sentences on what the evidence was read from, when that is not simply every result."""
        notes = []
        if len(self.units) > 1:
            sent = ", ".join(f"{unit or 'no unit'} × {count}" for unit, count in self.units.most_common())
            notes.append(f"units sent: {sent}; the values in {self.unit() or 'no unit'} were weighed")
        if self.total > self.read:
            notes.append(f"read from the first {self.read} of {self.total} results under this code")
        return notes


def read(session: Session, row: models.IssueRow, catalog: catalog_mod.Catalog) -> SentUnderCode:
    """Names, units and values of the first ``SOURCES_READ`` stored sources raising the issue."""
    sent = SentUnderCode()
    raises = models.IssueSource.issue_key == row.key
    sent.total = int(session.scalar(sa.select(sa.func.count()).where(raises)) or 0)
    refs = session.execute(
        sa.select(models.IssueSource.site, models.IssueSource.source)
        .where(raises)
        .order_by(models.IssueSource.source)
        .limit(SOURCES_READ)
    ).all()
    wanted = []
    for site, source in refs:
        resource_type, sep, resource_id = source.partition("/")
        if sep:
            wanted.append((site, resource_type, resource_id))
    sent.read = len(refs)
    for resource_type, raw in _bodies(session, wanted):
        body = _parsed(raw)
        if body is not None:
            sent.resource_types.add(resource_type)
            _read_body(body, row.code or "", catalog, sent)
    return sent


def _bodies(session: Session, wanted: Sequence[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """(resource type, stored body) of the wanted sources that are still stored.

    Asked per site and resource type (an issue's sources are nearly always
    one of each), so the lookup walks the primary key.
    """
    ids: dict[tuple[str, str], list[str]] = {}
    for site, resource_type, resource_id in wanted:
        ids.setdefault((site, resource_type), []).append(resource_id)
    source = models.SourceResource
    found: list[tuple[str, str]] = []
    for (site, resource_type), resource_ids in ids.items():
        query = sa.select(source.raw).where(
            source.site == site,
            source.resource_type == resource_type,
            source.resource_id.in_(resource_ids),
            source.outcome != "deleted",
        )
        found += [(resource_type, raw) for raw in session.scalars(query)]
    return found


def _parsed(raw: str | None) -> dict[str, Any] | None:
    try:
        body = orjson.loads(raw or "")
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _read_body(body: dict[str, Any], code: str, catalog: catalog_mod.Catalog, sent: SentUnderCode) -> None:
    """Add one source's names (under ``code``), unit and value; anything malformed is skipped."""
    codeable = body.get("code") or body.get("medicationCodeableConcept")
    if isinstance(codeable, dict):
        for coding in codeable.get("coding") or []:
            if isinstance(coding, dict) and _is_code(coding, code, catalog) and _text(coding.get("display")):
                sent.names[_text(coding.get("display"))] += 1
        if _text(codeable.get("text")):
            sent.names[_text(codeable.get("text"))] += 1
    quantity = body.get("valueQuantity")
    dosage = body.get("dosage")
    if quantity is None and isinstance(dosage, dict):
        quantity = dosage.get("dose")
    if isinstance(quantity, dict):
        _count_value(quantity.get("value"), _quantity_unit(quantity), sent)
    elif "valueInteger" in body:
        _count_value(body.get("valueInteger"), None, sent)


def _is_code(coding: dict[str, Any], code: str, catalog: catalog_mod.Catalog) -> bool:
    system, value = coding.get("system"), coding.get("code")
    if not isinstance(value, str) or not (system is None or isinstance(system, str)):
        return False
    return f"{catalog.canonical_system(system)}|{value}" == code


def _quantity_unit(quantity: dict[str, Any]) -> str | None:
    """The unit as the engine reads it (``mapping.quantities.quantity_unit``): UCUM code first."""
    code, unit, system = _text(quantity.get("code")), _text(quantity.get("unit")), quantity.get("system")
    if code and (system is None or system == _UCUM):
        return code
    return unit or code or None


def _count_value(value: Any, unit: str | None, sent: SentUnderCode) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    sent.units[unit] += 1
    sent.values.setdefault(unit, []).append(float(value))


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
