"""The worklist: open issues, filtered, with what each needs to be understood.

This is the console's home page.  Filters are a plain GET form (site,
subject, kind, concept, age, status, text), so a filtered worklist is a URL
a data manager can bookmark or send to a colleague, and the CSV export
(``views.exports``) takes the same query string.  An open unknown code's
row names the concept it most probably means (``reconciliation.suggestions``),
computed for the rows of the page only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from adapter.reconciliation import issue_query, suggestions
from adapter.web import context, params, render
from adapter.web.auth import AnyUser

router = APIRouter()
AGE_CHOICES = (0, 1, 7, 30)  # the age filter's choices, in days


@router.get("/")
def worklist(
    request: Request,
    user: AnyUser,
    db: Annotated[Session, Depends(context.db)],
    filt: Annotated[issue_query.IssueFilter, Depends(params.issue_filter)],
    page: params.PageNumber = 1,
) -> Response:
    console = context.of(request)
    items, total = issue_query.find_issues(
        db,
        filt,
        console.tokens.token,
        limit=issue_query.PAGE_SIZE,
        offset=(page - 1) * issue_query.PAGE_SIZE,
    )
    suggested = suggestions.suggestions_for(console.config, db, [item.row for item in items], top=1)
    return render.page(
        request,
        "worklist.html",
        user,
        title="Worklist",
        nav="worklist",
        filt=filt,
        items=items,
        suggested=suggested,
        total=total,
        page=page,
        pages=max(1, -(-total // issue_query.PAGE_SIZE)),
        kinds=issue_query.kind_counts(db, filt),
        facets=issue_query.facets(db),
        statuses=issue_query.STATUSES,
        ages=AGE_CHOICES,
    )
