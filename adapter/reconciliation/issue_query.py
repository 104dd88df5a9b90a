"""Finding issues: one filter and one query for every face that lists them.

The console's worklist, its issue page and CSV export, and ``trial-adapter
issues list`` all find issues here, with one filter type (``IssueFilter``),
so the export holds exactly what the worklist shows and the command line
filters the same way.  Besides the matching rows, the console gets what
makes an issue understandable at a glance: how many sources raise it, a
glimpse of the first one (``glimpse``), its age.  How a face addresses an
issue is its own business (the console uses keyed tokens, because keys hold
source references), so ``find_issues`` is handed a function for it.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlencode

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.reconciliation.glimpse import SourceGlimpse, glimpse
from adapter.store import models
from adapter.store.models import utcnow

STATUSES = ("open", "ignored", "resolved", "all")
PAGE_SIZE = 100
SOURCES_SHOWN = 20
MAX_AGE_DAYS = 36_500  # a century: more would overflow the date arithmetic
KEYS_PER_QUERY = 500  # bound parameters per IN (...): SQLite before 3.32 allows 999


@dataclass(frozen=True)
class IssueFilter:
    """Which issues to find.

    The console reads it from (and writes it back to) a query string, so a
    filtered worklist is a URL; ``trial-adapter issues list`` builds it from
    its options.
    """

    site: str = ""
    subject: str = ""
    kind: str = ""
    concept: str = ""
    min_age_days: int = 0
    status: str = "open"
    text: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> IssueFilter:
        def clean(name: str) -> str:
            return (params.get(name) or "").strip()[:200]

        try:
            age = min(max(0, int(params.get("min_age_days") or 0)), MAX_AGE_DAYS)
        except ValueError:
            age = 0
        status = clean("status") or "open"
        return cls(
            site=clean("site"),
            subject=clean("subject"),
            kind=clean("kind"),
            concept=clean("concept"),
            min_age_days=age,
            status=status if status in STATUSES else "open",
            text=clean("text"),
        )

    def query(self, **changes: str | int) -> str:
        """The query string for this filter with ``changes`` applied (empty values left out)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)} | changes
        kept = {k: v for k, v in values.items() if v not in ("", 0) and not (k == "status" and v == "open")}
        return urlencode(kept)

    @property
    def active(self) -> bool:
        return self != IssueFilter()


@dataclass(frozen=True)
class IssueItem:
    row: models.IssueRow
    token: str
    sources: int
    glimpse: SourceGlimpse | None
    age_days: int
    source_refs: tuple[str, ...] = ()  # the first sources: what masking replaces in the detail


def _filtered(filt: IssueFilter, now: dt.datetime) -> sa.Select[models.IssueRow]:
    query = sa.select(models.IssueRow)
    if filt.status != "all":
        query = query.where(models.IssueRow.status == filt.status)
    if filt.site:
        query = query.where(models.IssueRow.site == filt.site)
    if filt.subject:
        query = query.where(models.IssueRow.subject_id.contains(filt.subject, autoescape=True))
    if filt.kind:
        query = query.where(models.IssueRow.kind == filt.kind)
    if filt.concept:
        query = query.where(models.IssueRow.concept == filt.concept)
    if filt.min_age_days:
        query = query.where(models.IssueRow.first_seen <= now - dt.timedelta(days=filt.min_age_days))
    if filt.text:
        like = filt.text
        query = query.where(
            sa.or_(
                models.IssueRow.detail.contains(like, autoescape=True),
                models.IssueRow.code.contains(like, autoescape=True),
            )
        )
    return query


class Order(enum.Enum):
    """How matching issues are listed: by site, then kind, then this."""

    OLDEST_FIRST = "first seen"  # the console's worklist: the oldest problems first within a kind
    BY_KEY = "key"  # `trial-adapter issues list`: the keys in order


def issue_rows(
    session: Session,
    filt: IssueFilter,
    *,
    order: Order = Order.OLDEST_FIRST,
    limit: int | None = None,
    offset: int = 0,
    now: dt.datetime | None = None,
) -> list[models.IssueRow]:
    """The issues matching ``filt`` (``limit`` of them from ``offset``, or all), in ``order``."""
    last = models.IssueRow.first_seen if order is Order.OLDEST_FIRST else models.IssueRow.key
    query = _filtered(filt, now or utcnow()).order_by(models.IssueRow.site, models.IssueRow.kind, last)
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return list(session.scalars(query))


def source_counts(session: Session, keys: Sequence[str]) -> dict[str, int]:
    """How many sources (resources, derivations) raise each of ``keys`` now; absent means none."""
    counts: dict[str, int] = {}
    for start in range(0, len(keys), KEYS_PER_QUERY):
        chunk = keys[start : start + KEYS_PER_QUERY]
        rows = session.execute(
            sa.select(models.IssueSource.issue_key, sa.func.count())
            .where(models.IssueSource.issue_key.in_(chunk))
            .group_by(models.IssueSource.issue_key)
        )
        counts.update({key: int(count) for key, count in rows})
    return counts


def find_issues(
    session: Session,
    filt: IssueFilter,
    token: Callable[[str], str],
    *,
    limit: int | None = PAGE_SIZE,
    offset: int = 0,
    now: dt.datetime | None = None,
) -> tuple[list[IssueItem], int]:
    """One page of matching issues (oldest problems first within a kind) and the total count.

    ``token`` names an issue for the face that shows it (the console's
    ``IssueTokens.token``, so pages never carry the key).
    """
    now = now or utcnow()
    total = session.scalar(sa.select(sa.func.count()).select_from(_filtered(filt, now).subquery())) or 0
    rows = issue_rows(session, filt, limit=limit, offset=offset, now=now)
    counts, firsts, refs = _sources(session, [row.key for row in rows])
    glimpses = _glimpses(session, firsts)
    items = [
        IssueItem(
            row=row,
            token=token(row.key),
            sources=counts.get(row.key, 0),
            glimpse=glimpses.get(firsts.get(row.key, ("", ""))),
            age_days=max(0, (now - row.first_seen).days),
            source_refs=tuple(refs.get(row.key, ())),
        )
        for row in rows
    ]
    return items, int(total)


def kind_counts(session: Session, filt: IssueFilter) -> Counter[str]:
    """Issues per kind under every filter except the kind itself (for the summary chips)."""
    query = _filtered(IssueFilter(**{**filt.__dict__, "kind": ""}), utcnow()).subquery()
    rows = session.execute(sa.select(query.c.kind, sa.func.count()).group_by(query.c.kind))
    return Counter({kind: count for kind, count in rows})


def facets(session: Session) -> dict[str, list[str]]:
    """The values the filter drop-downs offer: what the issues actually hold."""

    def distinct(column: Any) -> list[str]:
        return sorted(v for v in session.scalars(sa.select(column).distinct()) if v)

    return {
        "site": distinct(models.IssueRow.site),
        "kind": distinct(models.IssueRow.kind),
        "concept": distinct(models.IssueRow.concept),
    }


def issue_sources(
    session: Session, key: str, limit: int = SOURCES_SHOWN
) -> tuple[list[tuple[str, SourceGlimpse | None, str | None]], int]:
    """The sources raising an issue (first ``limit``): reference, glimpse, trial subject; and their count.

    The subject matters most for issues scoped to a code: one unknown code
    can hold back results of several subjects.
    """
    query = sa.select(models.IssueSource.site, models.IssueSource.source).where(
        models.IssueSource.issue_key == key
    )
    rows = list(session.execute(query.order_by(models.IssueSource.source)))
    shown = [(site, source) for site, source in rows[:limit]]
    glimpses = _glimpses(session, {str(i): pair for i, pair in enumerate(shown)})
    subjects = _subjects(session, shown)
    return [
        (source, glimpses.get((site, source)), subjects.get((site, source))) for site, source in shown
    ], len(rows)


def _subjects(session: Session, refs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(site, "Type/id") -> trial subject id, through the resource's patient link."""
    result: dict[tuple[str, str], str] = {}
    for site, source in refs:
        resource_type, sep, resource_id = source.partition("/")
        if not sep:
            continue
        subject = session.scalar(
            sa.select(models.PatientLink.subject_id)
            .join(
                models.SourceResource,
                sa.and_(
                    models.SourceResource.site == models.PatientLink.site,
                    models.SourceResource.patient_ref == models.PatientLink.patient_ref,
                ),
            )
            .where(
                models.SourceResource.site == site,
                models.SourceResource.resource_type == resource_type,
                models.SourceResource.resource_id == resource_id,
            )
        )
        if subject:
            result[(site, source)] = subject
    return result


def _sources(
    session: Session, keys: list[str]
) -> tuple[dict[str, int], dict[str, tuple[str, str]], dict[str, list[str]]]:
    """Per issue key: how many sources raise it, the first (site, source), and the first few sources."""
    counts: dict[str, int] = {}
    firsts: dict[str, tuple[str, str]] = {}
    refs: dict[str, list[str]] = {}
    if not keys:
        return counts, firsts, refs
    rows = session.execute(
        sa.select(models.IssueSource.issue_key, models.IssueSource.site, models.IssueSource.source)
        .where(models.IssueSource.issue_key.in_(keys))
        .order_by(models.IssueSource.issue_key, models.IssueSource.source)
    )
    for key, site, source in rows:
        counts[key] = counts.get(key, 0) + 1
        firsts.setdefault(key, (site, source))
        if counts[key] <= SOURCES_SHOWN:
            refs.setdefault(key, []).append(source)
    return counts, firsts, refs


def _glimpses(session: Session, refs: Mapping[str, tuple[str, str]]) -> dict[tuple[str, str], SourceGlimpse]:
    """Glimpses of the stored resources behind ``(site, "Type/id")`` references."""
    wanted: set[tuple[str, str, str]] = set()
    for site, source in refs.values():
        resource_type, sep, resource_id = source.partition("/")
        if sep and resource_type[:1].isupper():
            wanted.add((site, resource_type, resource_id))
    if not wanted:
        return {}
    condition = sa.tuple_(
        models.SourceResource.site, models.SourceResource.resource_type, models.SourceResource.resource_id
    ).in_(sorted(wanted))
    rows = session.execute(
        sa.select(
            models.SourceResource.site,
            models.SourceResource.resource_type,
            models.SourceResource.resource_id,
            models.SourceResource.raw,
        ).where(condition)
    )
    return {(site, f"{rtype}/{rid}"): glimpse(orjson.loads(raw)) for site, rtype, rid, raw in rows}
