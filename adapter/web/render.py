"""Rendering pages: one Jinja2 environment, one ``page()`` that every view calls.

``page()`` puts what every template needs into the context (the user, the
CSRF token for forms, the masking function for source references), so a
template cannot forget the CSRF field or show a viewer a clear reference.
Autoescaping is on for every template.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from adapter import __version__
from adapter.web import context, csrf
from adapter.web.auth import Operator
from adapter.web.masking import RefMask

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))


def when(moment: dt.datetime | dt.date | str | None) -> str:
    """Times in UTC with the zone named: the console serves sites in several time zones."""
    if moment is None or moment == "":
        return "–"
    if isinstance(moment, str):
        return moment
    if isinstance(moment, dt.datetime):
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return moment.isoformat()


def _number(value: float | int | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def compact_json(value: Any) -> str:
    """A JSON value on one line, keys sorted: how audit details are shown and exported."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()


def split_code(code: str | None) -> tuple[str, str]:
    """``http://lab.example/fhir/lis|0099`` -> ("lab.example/fhir/lis", "0099").

    The worklist shows the code first and the system small beneath it.
    """
    if not code:
        return "", ""
    system, sep, value = code.rpartition("|")
    if not sep:
        return "", code
    return system.removeprefix("http://").removeprefix("https://"), value


def source_time(value: str | None) -> Markup:
    """A FHIR dateTime as the site wrote it, in its own offset: ``2025-06-17`` over ``07:31 +08:00``."""
    if not value:
        return Markup("–")
    try:
        moment = dt.datetime.fromisoformat(value.split(" – ")[0].replace("Z", "+00:00"))
    except ValueError:
        return Markup.escape(value)
    if len(value) <= 10:
        return Markup.escape(value)
    offset = moment.strftime("%z")
    offset = f" {offset[:3]}:{offset[3:]}" if offset else ""
    return Markup('{}<br><span class="muted small">{}</span>').format(
        moment.strftime("%Y-%m-%d"), moment.strftime("%H:%M") + offset
    )


# How much of a text from site data a page shows (a value, a unit, a display, an issue's detail).
# A site can send a 50 MB valueString; a hundred of them made a worklist page of
# 52 MB that took over 100 s to load.  ``SITE_TEXT`` fits any real lab value or
# display; ``LONG_TEXT`` any detail the adapter writes about one.
SITE_TEXT = 200
LONG_TEXT = 600


def clip(value: object, limit: int = SITE_TEXT) -> str:
    """``value`` as text of at most ``limit`` characters, cut with an ellipsis."""
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label(value: str | None) -> str:
    """``patient_not_on_roster`` reads better as "patient not on roster"."""
    return (value or "").replace("_", " ")


TEMPLATES.env.filters["when"] = when
TEMPLATES.env.filters["number"] = _number
TEMPLATES.env.filters["compact_json"] = compact_json
TEMPLATES.env.filters["split_code"] = split_code
TEMPLATES.env.filters["source_time"] = source_time
TEMPLATES.env.filters["clip"] = clip
TEMPLATES.env.globals["LONG_TEXT"] = LONG_TEXT
TEMPLATES.env.filters["label"] = _label
TEMPLATES.env.globals["version"] = __version__


def masker(request: Request, user: Operator | None) -> RefMask:
    return RefMask(context.of(request).site_secret, active=user is None or not user.role.sees_source_refs)


def page(
    request: Request,
    template: str,
    user: Operator | None,
    *,
    status_code: int = 200,
    title: str = "",
    nav: str = "",
    **values: Any,
) -> HTMLResponse:
    data = {
        "request": request,
        "user": user,
        "csrf_token": csrf.token_for(request),
        "csrf_field": Markup('<input type="hidden" name="{}" value="{}">').format(
            csrf.FIELD, csrf.token_for(request)
        ),
        "mask": masker(request, user),
        "title": title,
        "nav": nav,
        "sites": [site.id for site in context.of(request).config.sites],
        **values,
    }
    return TEMPLATES.TemplateResponse(request, template, data, status_code=status_code)
