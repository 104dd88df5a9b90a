"""Mapping coverage: how much of what a site sends becomes protocol facts.

Computed from the store (the outcome of every stored source resource and
the open issues), so it needs no access to the site's server and answers the
question a data manager asks before go-live and after every mapping change:
what share is mapped, per resource type and concept, and which unmapped
codes matter most.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.store import models


@dataclass
class TypeCoverage:
    resource_type: str
    total: int = 0
    mapped: int = 0
    ignored: int = 0
    issues: int = 0

    @property
    def share_mapped(self) -> float:
        considered = self.total - self.ignored
        return self.mapped / considered if considered else 1.0


@dataclass
class Coverage:
    site: str
    by_type: dict[str, TypeCoverage] = field(default_factory=dict)
    facts_by_concept: Counter[str] = field(default_factory=Counter)
    top_unmapped_codes: list[tuple[str, str, int]] = field(default_factory=list)  # (code, display, count)
    issues_by_kind: Counter[str] = field(default_factory=Counter)


def site_coverage(session: Session, site: str, top: int = 10) -> Coverage:
    """Coverage of one site's stored resources (deleted ones excluded)."""
    result = Coverage(site=site)
    rows = session.execute(
        sa.select(models.SourceResource.resource_type, models.SourceResource.outcome, sa.func.count())
        .where(models.SourceResource.site == site, models.SourceResource.outcome != "deleted")
        .group_by(models.SourceResource.resource_type, models.SourceResource.outcome)
    )
    for resource_type, outcome, count in rows:
        entry = result.by_type.setdefault(resource_type, TypeCoverage(resource_type))
        entry.total += count
        if outcome == "mapped":
            entry.mapped += count
        elif outcome == "ignored":
            entry.ignored += count
        else:
            entry.issues += count
    result.facts_by_concept.update(
        dict(
            session.execute(
                sa.select(models.FactRow.concept, sa.func.count())
                .where(models.FactRow.site == site)
                .group_by(models.FactRow.concept)
            ).all()
        )
    )
    open_issues = sa.select(models.IssueRow).where(
        models.IssueRow.site == site, models.IssueRow.status == "open"
    )
    unmapped: list[tuple[str, str, int]] = []
    for issue in session.scalars(open_issues):
        result.issues_by_kind[issue.kind] += 1
        if issue.kind == "unknown_code" and issue.code:
            raised = session.scalar(
                sa.select(sa.func.count()).where(
                    models.IssueSource.issue_key == issue.key, models.IssueSource.site == site
                )
            )
            unmapped.append((issue.code, _display(issue.detail), int(raised or 0)))
    result.top_unmapped_codes = sorted(unmapped, key=lambda u: (-u[2], u[0]))[:top]
    return result


def _display(detail: str) -> str:
    """The display text the engine put in parentheses after the code."""
    start, end = detail.find("("), detail.find(")")
    return detail[start + 1 : end] if 0 <= start < end else ""


def as_json(coverage: Coverage) -> bytes:
    return orjson.dumps(
        {
            "site": coverage.site,
            "by_type": {
                k: {**v.__dict__, "share_mapped": round(v.share_mapped, 4)}
                for k, v in coverage.by_type.items()
            },
            "facts_by_concept": dict(sorted(coverage.facts_by_concept.items())),
            "top_unmapped_codes": [
                {"code": c, "display": d, "resources": n} for c, d, n in coverage.top_unmapped_codes
            ],
            "issues_by_kind": dict(sorted(coverage.issues_by_kind.items())),
        },
        option=orjson.OPT_INDENT_2,
    )
