"""How the network sinks send a request and judge the answer: one try, outage or rejection.

One attempt per request and no retry loop: the outbox owns retries, with
backoff that survives restarts (``adapter.delivery.outbox``).  What this module
decides is whether a failure is an *outage* of the whole repository (no
connection, timeouts, 408, 429, 5xx, and 401/403, since refused credentials
refuse every item alike) or a *rejection* of this request, so a sink can stop
early on the first and isolate the culprit on the second.

The session, the credentials and the words for a failure are the ones a
source uses too (``adapter.net``): the TLS settings apply the same way, a
server's explanation is read from the same error body shapes, and a
connection failure is named by the same causes.  Every failure message
passes ``credentials.redacted``, which blanks the secrets this process has
read wherever a server or a library echoes them, and anything shaped like a
credential.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from adapter.net import credentials, messages, sessions
from adapter.net.settings import BearerAuth
from adapter.sinks import settings as sink_settings

OUTAGE_STATUSES = frozenset({401, 403, 408, 429})
FIXES = {
    401: "the repository refused the credentials; check [repository.auth] (or token_env / token_file)",
    403: "the credentials lack permission to write; ask the repository's administrators",
    404: "check [repository] url",
    413: "the request is too large for the repository; lower [repository] max_bundle_entries",
}


@dataclass(frozen=True)
class Failure:
    """Why a request did not succeed, and whether the whole repository is out."""

    error: str
    outage: bool


def open_session(settings: sink_settings.NetworkSinkSettings, bearer: str | None = None) -> requests.Session:
    """A pooled session with the repository's TLS settings applied and, if given, a bearer token."""
    session = sessions.open_session(
        settings.tls, peer="the repository", tls_table="[repository.tls]", log_extra={"url": settings.url}
    )
    if bearer:
        session.headers["Authorization"] = f"Bearer {bearer}"
    return session


def bearer_token(settings: sink_settings.BearerSinkSettings) -> str | None:
    auth = settings.auth
    if isinstance(auth, BearerAuth):
        return credentials.read_secret(auth.token_env, auth.token_file, key="repository.auth", what="token")
    return None


def send(
    session: requests.Session, method: str, url: str, *, timeout: float, **kwargs: Any
) -> requests.Response | Failure:
    """One request; a connection-level error becomes an outage ``Failure``."""
    try:
        return session.request(method, url, timeout=timeout, **kwargs)
    except requests.exceptions.SSLError as exc:
        problem = messages.tls_problem(exc, "[repository.tls]")
    except requests.Timeout:
        return Failure(credentials.redacted(f"{method} {url}: no answer within {timeout:g} s"), outage=True)
    except requests.RequestException as exc:
        problem = messages.connection_problem(exc, "[repository] url")
    message = f"{method} {url}: cannot reach the repository ({problem})"
    return Failure(credentials.redacted(message), outage=True)


def failure_of(response: requests.Response, what: str) -> Failure:
    """A failed response as a ``Failure`` whose message has the status, the server's words and the fix."""
    status = response.status_code
    message = f"{what}: HTTP {status} {response.reason or ''}".rstrip()
    said = messages.server_said(response)
    if said:
        message += f": {said}"
    if status in FIXES:
        message += f" ({FIXES[status]})"
    return Failure(credentials.redacted(message), outage=is_outage(status))


def is_outage(status: int) -> bool:
    return status in OUTAGE_STATUSES or status >= 500
