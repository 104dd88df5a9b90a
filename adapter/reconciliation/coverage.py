"""Mapping coverage: how much of what a site sends becomes protocol facts.

Computed from the store (the outcome of every stored source resource and
the open issues), so it needs no access to the site's server and answers the
question a data manager asks before go-live and after every mapping change:
what share is mapped, per resource type and concept, and which unmapped
codes matter most.  A dose not given, a procedure not done and an entry in
error are counted apart (``not_counted``): they are neither mapped data nor
issues, so they are left out of the share, and a dose not given (kept as a
fact) is not among the facts by concept.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.mapping.not_counted import NotCounted
from adapter.store import models

NOT_COUNTED = frozenset(outcome.value for outcome in NotCounted)


@dataclass
class TypeCoverage:
    resource_type: str
    total: int = 0
    mapped: int = 0
    ignored: int = 0
    issues: int = 0
    outside: int = 0  # standard codes outside the protocol (adapter.mapping.triage)
    # Not given, not done or entered in error (adapter.mapping.not_counted): no issue, no record.
    not_counted: int = 0

    @property
    def considered(self) -> int:
        """What the protocol may need: ignored, outside and not-counted resources are left out."""
        return self.total - self.ignored - self.outside - self.not_counted

    @property
    def share_mapped(self) -> float:
        return self.mapped / self.considered if self.considered else 1.0


@dataclass
class Coverage:
    site: str
    by_type: dict[str, TypeCoverage] = field(default_factory=dict)
    facts_by_concept: Counter[str] = field(default_factory=Counter)
    top_unmapped_codes: list[tuple[str, str, int]] = field(default_factory=list)  # (code, display, count)
    issues_by_kind: Counter[str] = field(default_factory=Counter)
    # Every standard code outside the protocol, most sent first: (resource type, code, display, count).
    outside_codes: list[tuple[str, str, str, int]] = field(default_factory=list)


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
        elif outcome == "outside":
            entry.outside += count
        elif outcome in NOT_COUNTED:
            entry.not_counted += count
        else:
            entry.issues += count
    result.outside_codes = _outside_codes(session, site)
    result.facts_by_concept.update(
        dict(
            session.execute(
                sa.select(models.FactRow.concept, sa.func.count())
                .where(models.FactRow.site == site, models.FactRow.source_ref.not_in(_not_given_refs(site)))
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


def _not_given_refs(site: str) -> sa.Select[str]:
    """The references of the site's doses not given: kept as facts, but no protocol fact."""
    source = models.SourceResource
    return sa.select(source.resource_type + "/" + source.resource_id).where(
        source.site == site, source.outcome == NotCounted.NOT_GIVEN.value
    )


def _outside_codes(session: Session, site: str) -> list[tuple[str, str, str, int]]:
    """One line per standard code outside the protocol: what a site sends that the trial does not use."""
    source = models.SourceResource
    rows = session.execute(
        sa.select(source.resource_type, source.code, sa.func.max(source.code_display), sa.func.count())
        .where(source.site == site, source.outcome == "outside", source.code.is_not(None))
        .group_by(source.resource_type, source.code)
    ).all()
    lines = [(kind, code or "", display or "", int(count)) for kind, code, display, count in rows]
    return sorted(lines, key=lambda line: (-line[3], line[0], line[1]))


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
            "outside_codes": [
                {"resource_type": t, "code": c, "display": d, "resources": n}
                for t, c, d, n in coverage.outside_codes
            ],
        },
        option=orjson.OPT_INDENT_2,
    )
