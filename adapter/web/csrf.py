"""CSRF protection: every state-changing request must prove it came from our own form.

A synchronizer token (OWASP CSRF cheat sheet): each form carries
``csrf_token``, an HMAC of the session's nonce, and every POST (the console
has no PUT or DELETE) is refused with 403 unless it matches.  The check runs
as an app-wide dependency, so a new write route cannot forget it.  As
defence in depth, a request whose ``Origin`` header names another site is
refused too, and the session cookie is SameSite=Lax.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from fastapi import Request

from adapter.web import context
from adapter.web.auth import browser_session

FIELD = "csrf_token"
HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfRejected(Exception):
    """The request carried no valid token (or came from another origin)."""


async def protect(request: Request) -> None:
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        raise CsrfRejected
    sent = request.headers.get(HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(FIELD)
            sent = value if isinstance(value, str) else None
    expected = context.of(request).codec.csrf_token(browser_session(request))
    if not sent or not hmac.compare_digest(sent, expected):
        raise CsrfRejected


def token_for(request: Request) -> str:
    return context.of(request).codec.csrf_token(browser_session(request))
