"""Sites: mapping coverage, sync health and the issue trend, per site.

The overview answers "is every site's feed alive and mapped?" at a glance;
a site's page answers "what is wrong there?": the last runs and their
outcomes, watermarks, what waits in the outbox, coverage per resource type,
the top unmapped codes (each linked to its issue, where it can be fixed),
and open issues per day.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlalchemy.orm import Session

from adapter.store.models import utcnow
from adapter.web import charts, context, render, site_health
from adapter.web.auth import AnyUser

router = APIRouter()


@router.get("/sites")
def sites(request: Request, user: AnyUser, db: Annotated[Session, Depends(context.db)]) -> Response:
    health = [site_health.site_health(db, site.id, runs=3) for site in context.of(request).config.sites]
    return render.page(request, "sites.html", user, title="Sites", nav="sites", health=health)


@router.get("/sites/{site}")
def site(request: Request, site: str, user: AnyUser, db: Annotated[Session, Depends(context.db)]) -> Response:
    console = context.of(request)
    if site not in {s.id for s in console.config.sites}:
        raise HTTPException(404, f"No site {site!r} in this adapter's config.")
    health = site_health.site_health(db, site)
    trend, series = charts.open_issues_over_time(health.issue_spans, today=utcnow().date(), days=60)
    unmapped = [
        (code, display, count, console.tokens.token(f"{site}|unknown_code|code:{code}"))
        for code, display, count in health.coverage.top_unmapped_codes
    ]
    return render.page(
        request,
        "site.html",
        user,
        title=f"Site {site}",
        nav="sites",
        health=health,
        trend=Markup(trend),  # noqa: S704  (escaped by svg.Svg)
        recent=series[-14:],
        unmapped=unmapped,
    )
