"""CSV exports for the trial's monitors: issues, eligibility, the audit log.

Exports follow the same masking as the pages: a viewer's export carries the
keyed hashes, never source references in clear.  The issues export takes
the worklist's query string, so "export what I see" is one link.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from adapter.web import context, csv_export, issue_query, render, subject_story
from adapter.web.auth import AnyUser
from adapter.web.views.audit import audit_query

router = APIRouter()


@router.get("/export/issues.csv")
def issues_csv(request: Request, user: AnyUser, db: Annotated[Session, Depends(context.db)]) -> Response:
    filt = issue_query.IssueFilter.from_params(request.query_params)
    items, _total = issue_query.find_issues(db, filt, context.of(request).tokens, limit=None)
    mask = render.masker(request, user)
    header = (
        "site",
        "kind",
        "status",
        "subject_id",
        "concept",
        "code",
        "unit",
        "value",
        "source_value",
        "source_unit",
        "source_time",
        "sources",
        "first_seen",
        "last_seen",
        "age_days",
        "detail",
        "reason",
        "issue",
    )
    rows = (
        (
            i.row.site,
            i.row.kind,
            i.row.status,
            i.row.subject_id,
            i.row.concept,
            i.row.code,
            i.row.unit,
            i.row.value,
            i.glimpse.value if i.glimpse else None,
            i.glimpse.unit if i.glimpse else None,
            i.glimpse.time if i.glimpse else None,
            i.sources,
            render.when(i.row.first_seen),
            render.when(i.row.last_seen),
            i.age_days,
            mask(i.row.detail, i.row.site),
            i.row.reason,
            mask(i.row.key, i.row.site),
        )
        for i in items
    )
    return csv_export.csv_response("issues.csv", header, rows)


@router.get("/export/eligibility.csv")
def eligibility_csv(request: Request, user: AnyUser, db: Annotated[Session, Depends(context.db)]) -> Response:
    console = context.of(request)
    header = (
        "site",
        "subject_id",
        "anchor",
        "anchor_date",
        "window_start",
        "overall",
        "criterion",
        "status",
        "value",
        "unit",
        "limit",
        "rule",
        "date",
        "reason",
        "evidence",
    )
    rows = []
    for summary in subject_story.subject_index(db):
        story = subject_story.load_story(db, summary.site, summary.subject_id, console.site_secret)
        record = story.eligibility
        if record is None:
            continue
        for criterion in record.get("criteria", []):
            evidence = criterion.get("evidence", [])
            if user.role.sees_source_refs:
                evidence = [story.evidence.get(h, h) for h in evidence]
            rows.append(
                (
                    summary.site,
                    summary.subject_id,
                    record.get("anchor"),
                    record.get("anchor_date"),
                    record.get("window_start"),
                    record.get("overall"),
                    criterion.get("criterion"),
                    criterion.get("status"),
                    criterion.get("value"),
                    criterion.get("unit"),
                    criterion.get("limit"),
                    criterion.get("rule"),
                    criterion.get("date"),
                    criterion.get("reason"),
                    " ".join(evidence),
                )
            )
    return csv_export.csv_response("eligibility.csv", header, rows)


@router.get("/export/audit.csv")
def audit_csv(
    request: Request,
    user: AnyUser,
    db: Annotated[Session, Depends(context.db)],
    actor: str = "",
    action: str = "",
    site: str = "",
) -> Response:
    mask = render.masker(request, user)
    header = (
        "id",
        "at",
        "actor",
        "action",
        "target",
        "site",
        "before",
        "after",
        "reason",
        "records_changed",
        "issues_resolved",
        "detail",
    )
    rows = []
    for entry in db.scalars(audit_query(actor, action, site)):
        detail = dict(entry.detail or {})
        entry_site = detail.get("site")
        rows.append(
            (
                entry.id,
                render.when(entry.at),
                entry.actor,
                entry.action,
                mask(entry.target, entry_site),
                entry_site,
                detail.get("before"),
                detail.get("after"),
                detail.get("reason"),
                detail.get("records_changed"),
                " ".join(detail.get("issues_resolved", [])),
                mask(render.compact_json(detail), entry_site),
            )
        )
    return csv_export.csv_response("audit.csv", header, rows)
