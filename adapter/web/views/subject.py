"""Subjects: the list, and one subject's protocol timeline, eligibility and history.

The timeline picture is drawn on the server (``timeline_svg``) and put
inline in the page, so it needs no script and prints with the page; the
same picture is served alone at ``.../timeline.svg`` for reports.  The
history lists what the site recorded as not given, not done or entered in
error (``subject_history``): no issue, no record, but part of the story.
"""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlalchemy.orm import Session

from adapter import errors, privacy
from adapter.mapping import catalog as catalog_mod
from adapter.protocol import rules as rules_mod
from adapter.web import charts, context, render, subject_history, subject_story, timeline_svg
from adapter.web.auth import AnyUser

router = APIRouter()


@router.get("/subjects")
def subjects(request: Request, user: AnyUser, db: Annotated[Session, Depends(context.db)]) -> Response:
    return render.page(
        request,
        "subjects.html",
        user,
        title="Subjects",
        nav="subjects",
        subjects=subject_story.subject_index(db),
    )


@router.get("/subjects/{site}/{subject_id}")
def subject(
    request: Request, site: str, subject_id: str, user: AnyUser, db: Annotated[Session, Depends(context.db)]
) -> Response:
    story, rules = _story(request, db, site, subject_id)
    criteria = (story.eligibility or {}).get("criteria", [])
    gauges = [Markup(charts.threshold_gauge(c, f"gauge-{i}")) for i, c in enumerate(criteria)]  # noqa: S704
    history = _history(request, db, site, subject_id)
    return render.page(
        request,
        "subject.html",
        user,
        title=f"Subject {subject_id}",
        nav="subjects",
        story=story,
        timeline=Markup(timeline_svg.render(story, rules)),  # noqa: S704  (escaped by svg.Svg)
        criteria=list(zip(criteria, gauges, strict=True)),
        evidence=story.evidence if user.role.sees_source_refs else {},
        history=history,
        not_given=subject_history.not_given_by_cycle(
            story.cycles, history, shift_days=_date_shift(request, subject_id)
        ),
    )


@router.get("/subjects/{site}/{subject_id}/timeline.svg")
def timeline_picture(
    request: Request, site: str, subject_id: str, _user: AnyUser, db: Annotated[Session, Depends(context.db)]
) -> Response:
    story, rules = _story(request, db, site, subject_id)
    return Response(timeline_svg.render(story, rules), media_type="image/svg+xml")


def _story(
    request: Request, db: Session, site: str, subject_id: str
) -> tuple[subject_story.SubjectStory, rules_mod.ProtocolRules]:
    console = context.of(request)
    if site not in {s.id for s in console.config.sites}:
        raise HTTPException(404, f"No site {site!r} in this adapter's config.")
    story = subject_story.load_story(db, site, subject_id, console.site_secret)
    if story.empty and not story.open_issues:
        raise HTTPException(404, f"No records or issues for subject {subject_id!r} at {site}.")
    try:
        rules = rules_mod.load_rules(console.config.study.mappings, site)
    except rules_mod.RulesError as exc:
        raise errors.MappingError(str(exc)) from exc
    return story, rules


def _history(request: Request, db: Session, site: str, subject_id: str) -> list[subject_history.HistoryEntry]:
    config = context.of(request).config
    # A broken catalog is a MappingError, shown like the rules' own (the sync stops on it too).
    catalog = catalog_mod.load_catalog(config.study.mappings, site, config.overrides_dir())
    timezone = ZoneInfo(config.site(site).timezone)
    return subject_history.subject_history(db, site, subject_id, catalog, timezone)


def _date_shift(request: Request, subject_id: str) -> int:
    """The subject's shift of delivered dates (0 unless ``[privacy] date_shift_days`` is set)."""
    console = context.of(request)
    return privacy.subject_date_shift(console.site_secret, subject_id, console.config.privacy.date_shift_days)
