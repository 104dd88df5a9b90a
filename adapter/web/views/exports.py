"""CSV exports for the trial's monitors: issues, eligibility, the audit log.

Exports follow the same masking as the pages: a viewer's export carries the
keyed hashes, never source references in clear, field by field
(``masking.RefMask``).  Texts from site data are cut to ``EXPORT_TEXT``
characters, like the pages cut them.  The issues export takes the
worklist's query string, so "export what I see" is one link.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from adapter.reconciliation import issue_query
from adapter.web import context, csv_export, params, render, subject_story
from adapter.web.auth import AnyUser
from adapter.web.views.audit import audit_query

router = APIRouter()

EXPORT_TEXT = 2000  # characters of one cell of site text (an issue's detail, a value)


@router.get("/export/issues.csv")
def issues_csv(
    request: Request,
    user: AnyUser,
    db: Annotated[Session, Depends(context.db)],
    filt: Annotated[issue_query.IssueFilter, Depends(params.issue_filter)],
) -> Response:
    items, _total = issue_query.find_issues(db, filt, context.of(request).tokens.token, limit=None)
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
            render.clip(i.row.code, EXPORT_TEXT),
            render.clip(i.row.unit, EXPORT_TEXT),
            render.clip(i.row.value, EXPORT_TEXT),
            i.glimpse.value if i.glimpse else None,
            i.glimpse.unit if i.glimpse else None,
            i.glimpse.time if i.glimpse else None,
            i.sources,
            render.when(i.row.first_seen),
            render.when(i.row.last_seen),
            i.age_days,
            render.clip(mask.detail(i.row, i.source_refs), EXPORT_TEXT),
            render.clip(mask(i.row.reason, i.row.site), EXPORT_TEXT),
            render.clip(mask.key(i.row.key), EXPORT_TEXT),
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
                mask.target(entry.target, entry_site),
                entry_site,
                render.clip(detail.get("before"), EXPORT_TEXT),
                render.clip(detail.get("after"), EXPORT_TEXT),
                render.clip(mask(detail.get("reason"), entry_site), EXPORT_TEXT),
                detail.get("records_changed"),
                " ".join(mask.key(str(key), entry_site) for key in detail.get("issues_resolved", [])),
                render.compact_json(mask.audit_detail(detail, entry_site)),
            )
        )
    return csv_export.csv_response("audit.csv", header, rows)
