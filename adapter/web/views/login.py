"""Logging in and out.

Failed logins are throttled per user name and per client address
(``throttle.LoginThrottle``); the answer never says whether the user name
exists.  A successful login starts a new session (new nonce, so a cookie
planted before login is worthless) and goes back to the page that asked.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from adapter.web import accounts, context, render
from adapter.web.auth import Operator, browser_session, optional_operator
from adapter.web.sessions import ConsoleSession

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/login")
def login_form(
    request: Request, user: Annotated[Operator | None, Depends(optional_operator)], next: str = "/"
) -> Response:
    if user is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render.page(request, "login.html", None, title="Log in", next=_safe_next(next))


@router.post("/login")
def login(
    request: Request,
    db: Annotated[Session, Depends(context.db)],
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form()] = "/",
) -> Response:
    console = context.of(request)
    keys = (f"user:{username.strip().lower()}", f"addr:{request.client.host if request.client else '-'}")
    wait = console.throttle.retry_after(*keys)
    if wait:
        response = render.page(
            request,
            "login.html",
            None,
            status_code=429,
            title="Log in",
            next=_safe_next(next),
            username=username,
            error=f"Too many failed logins. Try again in {_minutes(wait)}.",
        )
        response.headers["Retry-After"] = str(wait)
        return response
    user = accounts.authenticate(db, username.strip(), password)
    if user is None:
        console.throttle.failed(*keys)
        log.warning("failed console login", extra={"user": username.strip()[:100]})
        return render.page(
            request,
            "login.html",
            None,
            status_code=401,
            title="Log in",
            next=_safe_next(next),
            username=username,
            error="Wrong user name or password.",
        )
    db.commit()  # a re-hashed password (newer argon2 parameters) is kept
    console.throttle.succeeded(*keys)
    fingerprint = console.codec.password_fingerprint(user.password_hash)
    request.state.session = browser_session(request).logged_in(user.id, fingerprint)
    log.info("console login", extra={"user": user.username})
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, user: Annotated[Operator | None, Depends(optional_operator)]) -> Response:
    request.state.session = ConsoleSession.anonymous()
    if user is not None:
        log.info("console logout", extra={"user": user.username})
    return RedirectResponse("/login", status_code=303)


def _safe_next(target: str) -> str:
    """Only paths on this console: ``//evil.example`` or a full URL would be an open redirect."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _minutes(seconds: int) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
