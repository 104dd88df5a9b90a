"""The console's app factory: ``create_app(config)`` returns a ready FastAPI app.

Everything a request needs is built here once (store, secrets, login
throttle, the runner of background fixes) and kept on ``app.state.console``; the page modules in ``views/``
only declare routes.  Two app-wide guards run on every request: the session
middleware (a signed cookie naming a live server-side session, ``sessions``)
and the CSRF dependency (``csrf.protect``), so no route can be added without
them.  Proxy headers are the app's business too: ``X-Forwarded-For`` and
``-Proto`` are believed only from ``[console] trusted_proxies`` (uvicorn's own
``ProxyHeadersMiddleware``, added here so that it holds whatever server runs
the app; ``trial-adapter console`` switches uvicorn's copy off).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import RequestResponseEndpoint
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from adapter import config as config_mod
from adapter import privacy
from adapter.store import db
from adapter.web import auth, context, csrf, render, sessions, views
from adapter.web.auth import Forbidden, LoginRequired, Operator
from adapter.web.issue_tokens import IssueTokens
from adapter.web.jobs import JobRunner
from adapter.web.sessions import COOKIE_NAME, ConsoleSession, SessionCodec, load_or_create_secret
from adapter.web.throttle import LoginThrottle

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

# No scripts at all, and nothing from other origins: pages are plain HTML forms.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def create_app(
    config: config_mod.Config,
    *,
    sessions: sessionmaker[Session] | None = None,
    throttle: LoginThrottle | None = None,
    jobs: JobRunner | None = None,
) -> FastAPI:
    secret = load_or_create_secret(config.console.session_secret_file)
    console = context.Console(
        config=config,
        sessions=sessions or db.open_store(config.store.url),
        codec=SessionCodec(secret, max_age_seconds=config.console.session_hours * 3600),
        site_secret=privacy.load_secret(config.privacy),
        throttle=throttle or LoginThrottle(max_failures=config.console.login_attempts),
        tokens=IssueTokens(secret),
        jobs=jobs or JobRunner(),
    )
    app = FastAPI(
        title="trial-adapter console",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(csrf.protect)],
        lifespan=_lifespan,
    )
    app.state.console = console
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.middleware("http")(_sessions)
    if config.console.trusted_proxies:  # added last, so it runs first: sessions see the client's scheme
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(config.console.trusted_proxies))
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(csrf.CsrfRejected, _csrf_rejected)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    for router in views.ROUTERS:
        app.include_router(router)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """On shutdown, fixes still waiting are dropped; a running one finishes (``jobs.JobRunner.close``)."""
    yield
    console: context.Console = app.state.console
    console.jobs.close()


async def _sessions(request: Request, call_next: RequestResponseEndpoint) -> Response:
    """Load the signed session cookie (or start an anonymous one); write it back when it changed.

    A logged-in cookie whose server-side session has ended (logout, new
    password, disabled user, idle, too old) becomes anonymous here, before any
    route sees it.
    """
    console = context.of(request)
    loaded = console.codec.loads(request.cookies.get(COOKIE_NAME))
    session = loaded or ConsoleSession.anonymous()
    if session.user_id is not None and not request.url.path.startswith("/static/"):
        if not await run_in_threadpool(_live, console, session):
            session = session.ended()
    request.state.session = session
    response = await call_next(request)
    current: ConsoleSession = request.state.session
    if current != loaded:
        response.set_cookie(
            COOKIE_NAME,
            console.codec.dumps(current),
            max_age=console.codec.max_age,
            path="/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https" or console.config.console.secure_cookies,
        )
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.url.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _live(console: context.Console, session: ConsoleSession) -> bool:
    """Whether the session's row lives; records the visit (best effort: a busy database only skips it)."""
    limits = console.config.console
    with console.sessions() as store:
        live = sessions.is_live(
            store,
            session,
            idle=dt.timedelta(minutes=limits.idle_minutes),
            lifetime=dt.timedelta(hours=limits.session_hours),
        )
        if live and store.dirty:
            try:
                store.commit()
            except sa.exc.OperationalError as exc:  # e.g. SQLite busy under a long sync write
                store.rollback()
                log.warning("could not record console session activity", extra={"error": str(exc)[:200]})
    return live


async def _login_required(request: Request, _exc: Exception) -> Response:
    if request.method in csrf.SAFE_METHODS:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{_next(target)}", status_code=303)
    return render.page(
        request,
        "error.html",
        None,
        status_code=401,
        title="Please log in",
        message="Your session has ended. Log in again, then repeat the action.",
    )


async def _forbidden(request: Request, exc: Exception) -> Response:
    message = exc.message if isinstance(exc, Forbidden) else "Not allowed."
    return render.page(
        request, "error.html", _who(request), status_code=403, title="Not allowed", message=message
    )


async def _csrf_rejected(request: Request, _exc: Exception) -> Response:
    log.warning("refused a request without a valid CSRF token", extra={"path": request.url.path})
    return render.page(
        request,
        "error.html",
        _who(request),
        status_code=403,
        title="Form expired",
        message="This form was not sent from a current console page (missing or stale CSRF token). "
        "Go back, reload the page and try again.",
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else "error"
    titles = {404: "Not found", 405: "Method not allowed"}
    return render.page(
        request,
        "error.html",
        _who(request),
        status_code=status,
        title=titles.get(status, "Error"),
        message=str(detail),
    )


async def _invalid_request(request: Request, exc: Exception) -> Response:
    """A parameter out of bounds (a page number, an id): the console's error page, status 422.

    Names the parameters and what they accept, never the value sent, which
    could be anything a hostile client typed.
    """
    problems = []
    for error in exc.errors() if isinstance(exc, RequestValidationError) else []:
        where = ".".join(str(part) for part in error.get("loc", ())[1:]) or "request"
        problems.append(f"{where}: {str(error.get('msg', 'not accepted'))[:120]}")
    return render.page(
        request,
        "error.html",
        _who(request),
        status_code=422,
        title="Not accepted",
        message="; ".join(problems[:5]) or "the request was not accepted",
    )


def _next(target: str) -> str:
    return urlencode({"next": target})


def _who(request: Request) -> Operator | None:
    """The logged-in user, for the header of error pages (they bypass the route's dependencies)."""
    with context.of(request).sessions() as session:
        return auth.optional_operator(request, session)
