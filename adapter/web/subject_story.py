"""One subject's protocol story, read from the store for the subject page.

The current protocol records (``RecordRow.payload``, exactly what the trial
repository received) give eligibility, cycles, collection, day 0,
reconstitution and MRD; the facts (``FactRow``) give the lab series behind
them (WBC and platelet recovery).  Nothing is derived again here: the page
shows what was delivered, so a monitor and the site look at the same thing.

Records name their evidence only by keyed hashes (``privacy.hash_ref``);
for data managers the hashes are resolved back to the subject's source
references, so they can find the result in the EHR.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter import privacy
from adapter.mapping.facts import Fact
from adapter.protocol.records import RecordType
from adapter.store import models, state

COUNT_CONCEPTS = ("wbc", "platelets")


@dataclass(frozen=True)
class Point:
    day: dt.date
    value: float
    source_ref: str


@dataclass
class SubjectStory:
    site: str
    subject_id: str
    eligibility: dict[str, Any] | None = None
    cycles: list[dict[str, Any]] = field(default_factory=list)
    collection: dict[str, Any] | None = None
    transplant: dict[str, Any] | None = None
    reconstitution: dict[str, Any] | None = None
    mrd: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, list[Point]] = field(default_factory=dict)
    evidence: dict[str, str] = field(default_factory=dict)  # keyed hash -> source reference
    open_issues: list[models.IssueRow] = field(default_factory=list)

    @property
    def day0(self) -> dt.date | None:
        return parse_day(self.transplant.get("day0")) if self.transplant else None

    @property
    def empty(self) -> bool:
        return not (
            self.eligibility or self.cycles or self.transplant or self.mrd or any(self.counts.values())
        )


@dataclass(frozen=True)
class SubjectSummary:
    site: str
    subject_id: str
    records: int
    open_issues: int
    eligibility: str | None
    day0: str | None


def load_story(session: Session, site: str, subject_id: str, secret: bytes) -> SubjectStory:
    story = SubjectStory(site=site, subject_id=subject_id)
    rows = session.scalars(
        sa.select(models.RecordRow).where(
            models.RecordRow.site == site,
            models.RecordRow.subject_id == subject_id,
            models.RecordRow.retracted.is_(False),
        )
    )
    for row in rows:
        payload = orjson.loads(row.payload)
        match row.record_type:
            case RecordType.ELIGIBILITY:
                story.eligibility = payload
            case RecordType.CYCLE:
                story.cycles.append(payload)
            case RecordType.COLLECTION:
                story.collection = payload
            case RecordType.TRANSPLANT:
                story.transplant = payload
            case RecordType.RECONSTITUTION:
                story.reconstitution = payload
            case RecordType.MRD:
                story.mrd.append(payload)
    story.cycles.sort(key=lambda c: (c["start"], c["number"]))
    story.mrd.sort(key=lambda m: (m["date"], m["method"]))
    facts = state.subject_facts(session, site, subject_id)
    story.counts = _counts(facts)
    story.evidence = {privacy.hash_ref(secret, site, f.source_ref): f.source_ref for f in facts}
    story.open_issues = list(
        session.scalars(
            sa.select(models.IssueRow)
            .where(
                models.IssueRow.site == site,
                models.IssueRow.subject_id == subject_id,
                models.IssueRow.status == "open",
            )
            .order_by(models.IssueRow.kind)
        )
    )
    return story


def subject_index(session: Session) -> list[SubjectSummary]:
    """Every subject with current records, with what the subject list shows."""
    records = session.execute(
        sa.select(models.RecordRow.site, models.RecordRow.subject_id, sa.func.count())
        .where(models.RecordRow.retracted.is_(False))
        .group_by(models.RecordRow.site, models.RecordRow.subject_id)
    )
    issues = dict(
        ((site, subject), count)
        for site, subject, count in session.execute(
            sa.select(models.IssueRow.site, models.IssueRow.subject_id, sa.func.count())
            .where(models.IssueRow.status == "open", models.IssueRow.subject_id.is_not(None))
            .group_by(models.IssueRow.site, models.IssueRow.subject_id)
        )
    )
    headline: dict[tuple[str, str], dict[str, str]] = {}
    for site, subject, record_type, payload in session.execute(
        sa.select(
            models.RecordRow.site,
            models.RecordRow.subject_id,
            models.RecordRow.record_type,
            models.RecordRow.payload,
        ).where(
            models.RecordRow.retracted.is_(False),
            models.RecordRow.record_type.in_([RecordType.ELIGIBILITY.value, RecordType.TRANSPLANT.value]),
        )
    ):
        data = orjson.loads(payload)
        entry = headline.setdefault((site, subject), {})
        if record_type == RecordType.ELIGIBILITY:
            entry["eligibility"] = data.get("overall")
        else:
            entry["day0"] = data.get("day0")
    return sorted(
        (
            SubjectSummary(
                site=site,
                subject_id=subject,
                records=count,
                open_issues=issues.get((site, subject), 0),
                eligibility=headline.get((site, subject), {}).get("eligibility"),
                day0=headline.get((site, subject), {}).get("day0"),
            )
            for site, subject, count in records
        ),
        key=lambda s: (s.site, s.subject_id),
    )


def _counts(facts: list[Fact]) -> dict[str, list[Point]]:
    series: dict[str, list[Point]] = {concept: [] for concept in COUNT_CONCEPTS}
    for fact in facts:
        if fact.concept in series and fact.value is not None:
            series[fact.concept].append(Point(fact.local_date, fact.value, fact.source_ref))
    for points in series.values():
        points.sort(key=lambda p: (p.day, p.value))
    return series


def parse_day(value: Any) -> dt.date | None:
    if isinstance(value, str) and value:
        return dt.date.fromisoformat(value[:10])
    return None
