"""Logging in and out.

Logins are throttled per user name and per client address
(``throttle.LoginThrottle``): the attempt is counted before the password is
checked, and a right one clears only the user name's count.  The answer never
says whether the user name exists.  A successful login starts a new session
(new nonce, so a cookie planted before login is worthless; a new
``console_sessions`` row) and goes back to the page that asked.  Logging out
revokes every session of the user, in every browser, so a copied cookie
dies with it.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from adapter import actors
from adapter.web import accounts, context, render, sessions
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
    user_key = f"user:{username.strip().lower()}"
    attempt = console.throttle.attempt(user_key, f"addr:{request.client.host if request.client else '-'}")
    if attempt.refused:
        wait = attempt.retry_after
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
    if user is None:  # already counted by attempt()
        shown = username.strip() if actors.is_user_name(username.strip()) else "(not a valid user name)"
        log.warning("failed console login", extra={"user": shown})
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
    session = browser_session(request).logged_in(user.id)
    limits = console.config.console
    sessions.forget_dead(
        db, idle=dt.timedelta(minutes=limits.idle_minutes), lifetime=dt.timedelta(hours=limits.session_hours)
    )
    sessions.start(db, session)
    db.commit()  # the session row, and a re-hashed password (newer argon2 parameters)
    console.throttle.succeeded(attempt, forgive=user_key)
    request.state.session = session
    log.info("console login", extra={"user": user.username})
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(
    request: Request,
    db: Annotated[Session, Depends(context.db)],
    user: Annotated[Operator | None, Depends(optional_operator)],
) -> Response:
    """End every session of the user (server-side), not only this browser's cookie."""
    if user is not None:
        ended = sessions.end_all(db, user.id, "logout")
        db.commit()
        log.info("console logout", extra={"user": user.username, "sessions_ended": ended})
    request.state.session = ConsoleSession.anonymous()
    return RedirectResponse("/login", status_code=303)


def _safe_next(target: str) -> str:
    """Only paths on this console: ``//evil.example`` or a full URL would be an open redirect."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _minutes(seconds: int) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
