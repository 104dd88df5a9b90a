"""Events the protocol does not count: a dose not given, a procedure not done, an entry withdrawn.

A MedicationAdministration with status ``not-done`` (a bag not hung), a
Procedure ``not-done`` (a planned transplant that did not happen) and any
resource the site marked ``entered-in-error`` (its own correction) are not
problems: the site's record is complete and right, and nothing in it needs a
data manager's decision.  So they raise no issue and never feed a protocol
record; a resource that fed one before it was withdrawn takes its facts back
like any changed resource (docs/design.md §3).  They are still part of the
subject's story, so the stored resource keeps what happened as its outcome
(``NotCounted``) and the console lists them in the subject's history, with
the concept and day ``describe`` reads from the stored form.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from adapter.mapping import catalog as catalog_mod
from adapter.mapping import times
from adapter.mapping.facts import NOT_DONE

__all__ = ["ENTERED_IN_ERROR", "NOT_DONE", "Described", "NotCounted", "describe"]

# The status every FHIR resource type uses for "this should never have existed".
ENTERED_IN_ERROR = "entered-in-error"


class NotCounted(StrEnum):
    """What the site recorded instead of an event; the value is the stored resource's outcome."""

    NOT_GIVEN = "not-given"  # an administration not-done: kept as a fact with status not-done
    NOT_DONE = "not-done"  # a procedure not-done: no fact
    WITHDRAWN = "withdrawn"  # entered-in-error, of any type: no fact


@dataclass(frozen=True)
class Described:
    """What the subject's history shows of a resource: its concept and its site-local day."""

    concept: str | None  # None: none of its codes is in the catalog (any more)
    day: dt.date | None  # None: no time, or one coarser than a day


def describe(raw: dict[str, Any], catalog: catalog_mod.Catalog, timezone: ZoneInfo) -> Described:
    """The concept and local day of a stored resource, read leniently (a missing part is None).

    ``raw`` is the stored form (``adapter.fhir.stored_form``): the fields the
    mappers read, so the code is found where they find it, including a
    Medication contained in an administration.
    """
    concept = None
    for coding in _codings(_codeable(raw)):
        found = catalog.concept_for(_text(coding.get("system")), _text(coding.get("code")))
        if found is not None:
            concept = found.id
            break
    return Described(concept=concept, day=_day(raw, timezone))


def _codeable(raw: dict[str, Any]) -> Any:
    if raw.get("resourceType") != "MedicationAdministration":
        return raw.get("code")
    if raw.get("medicationCodeableConcept") is not None:
        return raw["medicationCodeableConcept"]
    reference = _text((raw.get("medicationReference") or {}).get("reference")) or ""
    for contained in raw.get("contained") or []:
        if (
            isinstance(contained, dict)
            and contained.get("resourceType") == "Medication"
            and f"#{contained.get('id')}" == reference
        ):
            return contained.get("code")
    return None


def _codings(codeable: Any) -> list[dict[str, Any]]:
    codings = codeable.get("coding") if isinstance(codeable, dict) else None
    return [c for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []


def _day(raw: dict[str, Any], timezone: ZoneInfo) -> dt.date | None:
    """The local day the resource happened (or was to happen): its time or its period's start."""
    for key in ("effectiveDateTime", "effectiveInstant", "performedDateTime"):
        if raw.get(key):
            return _local_day(raw[key], timezone)
    for key in ("effectivePeriod", "performedPeriod"):
        period = raw.get(key)
        if isinstance(period, dict) and period.get("start"):
            return _local_day(period["start"], timezone)
    return None


def _local_day(value: Any, timezone: ZoneInfo) -> dt.date | None:
    try:
        moment = times.to_aware(value, timezone)
    except times.ImpreciseTime:
        return None
    return times.local_date(moment, timezone) if moment is not None else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
