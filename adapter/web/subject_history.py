"""A subject's history: doses not given, procedures not done, entries the site withdrew.

None of them is a problem, so none is on the worklist, and none feeds a
protocol record (``adapter.mapping.not_counted``).  A data manager still
needs to see them: the creatinine that changed because the site corrected a
slip, the bag that was never hung inside a cycle, the transplant that was
planned and not done.  They are read from the stored resources whose outcome
says so, with the concept and day ``not_counted.describe`` reads from the
stored form, so the page shows what the state holds now, not a log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.mapping import catalog as catalog_mod
from adapter.mapping.not_counted import NotCounted, describe
from adapter.protocol.cycles import CONCEPT as STUDY_DRUG
from adapter.store import models

# How the page says what happened, per stored outcome.
WORDING = {
    NotCounted.NOT_GIVEN: "not given",
    NotCounted.NOT_DONE: "not done",
    NotCounted.WITHDRAWN: "entered in error by the site",
}


@dataclass(frozen=True)
class HistoryEntry:
    day: dt.date | None
    concept: str | None
    source_ref: str
    happened: NotCounted

    @property
    def what(self) -> str:
        return WORDING[self.happened]


def subject_history(
    session: Session,
    site: str,
    subject_id: str,
    catalog: catalog_mod.Catalog,
    timezone: ZoneInfo,
) -> list[HistoryEntry]:
    """The subject's not-counted resources, oldest first (undated ones last)."""
    source, link = models.SourceResource, models.PatientLink
    rows = session.execute(
        sa.select(source.resource_type, source.resource_id, source.outcome, source.raw)
        .join(link, sa.and_(link.site == source.site, link.patient_ref == source.patient_ref))
        .where(
            source.site == site,
            link.subject_id == subject_id,
            source.outcome.in_([outcome.value for outcome in NotCounted]),
        )
    )
    entries = []
    for resource_type, resource_id, outcome, raw in rows:
        described = describe(_parsed(raw), catalog, timezone)
        entries.append(
            HistoryEntry(
                day=described.day,
                concept=described.concept,
                source_ref=f"{resource_type}/{resource_id}",
                happened=NotCounted(outcome),
            )
        )
    return sorted(entries, key=lambda e: (e.day is None, e.day or dt.date.min, e.source_ref))


def not_given_by_cycle(
    cycles: Iterable[dict[str, Any]], history: Iterable[HistoryEntry], *, shift_days: int = 0
) -> dict[str, list[HistoryEntry]]:
    """Record id of each cycle -> the study-drug doses not given on its days.

    A dose not given never shapes a cycle (docs/design.md §4), so it is placed
    by its day within the cycle's first and last day; one between cycles
    belongs to none and is only in the history.  The cycles are the records
    as delivered, so with ``[privacy] date_shift_days`` their days are the
    subject's shifted ones: ``shift_days`` (``privacy.subject_date_shift``)
    moves the true days of the doses the same way before they are compared.
    """
    shift = dt.timedelta(days=shift_days)
    doses = [
        (e.day + shift, e)
        for e in history
        if e.happened is NotCounted.NOT_GIVEN and e.concept == STUDY_DRUG and e.day is not None
    ]
    placed: dict[str, list[HistoryEntry]] = {}
    for cycle in cycles:
        start, end = _day(cycle.get("start")), _day(cycle.get("end"))
        inside = [e for day, e in doses if start is not None and end is not None and start <= day <= end]
        if inside:
            placed[str(cycle["record_id"])] = inside
    return placed


def _parsed(raw: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _day(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(value[:10]) if isinstance(value, str) and value else None
