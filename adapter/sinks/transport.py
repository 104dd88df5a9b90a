"""HTTP plumbing the network sinks share: credentials, TLS, and failures in plain words.

One attempt per request and no retry loop: the outbox owns retries, with
backoff that survives restarts (``adapter.delivery``).  What this module
decides is whether a failure is an *outage* of the whole repository (no
connection, timeouts, 408, 429, 5xx, and 401/403, since refused credentials
refuse every item alike) or a *rejection* of this request, so a sink can stop
early on the first and isolate the culprit on the second.  The sorting
follows cumulus-fhir-support ``http.py``; the server's own message is pulled
out of a FHIR OperationOutcome, a REDCap ``{"error": ...}`` body, or the
usual ``{"message": ...}``/``{"detail": ...}`` of REST APIs.

Tokens are read from an environment variable or a file named in the config,
never from the config itself, and never appear in messages: every failure
message passes ``redacted``, which blanks the secrets this process has read
(``read_secret``) wherever a server or a library echoes them, and anything
shaped like a credential (an ``Authorization`` header, a bearer token, a
URL's password, a ``token=`` query or form field).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import requests

from adapter import __version__, errors, secret_files
from adapter.fhir import settings as fhir_settings
from adapter.sinks import settings as sink_settings

OUTAGE_STATUSES = frozenset({401, 403, 408, 429})
FIXES = {
    401: "the repository refused the credentials; check [repository.auth] (or token_env / token_file)",
    403: "the credentials lack permission to write; ask the repository's administrators",
    404: "check [repository] url",
    413: "the request is too large for the repository; lower [repository] max_bundle_entries",
}


REDACTED = "(redacted)"
# Shapes of credentials in text: header lines, auth schemes, URL passwords, query or form fields, JSON.
_CREDENTIAL_SHAPES = (
    (
        re.compile(r"(?i)\b((?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)(?:[A-Za-z]+\s+)?[^\s'\",;}]+"),
        r"\1" + REDACTED,
    ),
    # a scheme followed by something token-like (8+ characters with a digit or punctuation), so
    # "Basic authentication failed" keeps its words
    (
        re.compile(r"(?i)\b(bearer|basic)\s+(?=[A-Za-z]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,}"),
        r"\1 " + REDACTED,
    ),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^@\s/]+@"), r"\1:" + REDACTED + "@"),
    (
        re.compile(
            r"(?i)((?:^|[?&;\s])(?:access_token|id_token|refresh_token|token|api_key|apikey|key|password|"
            r"passwd|secret|client_secret|sig|signature)=)[^&\s#'\"]+"
        ),
        r"\1" + REDACTED,
    ),
    (
        re.compile(
            r"(?i)(['\"](?:access_token|id_token|refresh_token|token|api_key|password|secret|client_secret)"
            r"['\"]\s*:\s*['\"])[^'\"]*"
        ),
        r"\1" + REDACTED,
    ),
)
_SECRETS: set[str] = set()  # every credential this process read, to blank wherever it is echoed
MIN_SECRET_LENGTH = 4  # shorter values would blank ordinary words


def redacted(text: str) -> str:
    """``text`` with the secrets this process read and anything shaped like a credential blanked."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for shape, replacement in _CREDENTIAL_SHAPES:
        text = shape.sub(replacement, text)
    return text


def remember_secret(value: str) -> str:
    """Note a credential so ``redacted`` blanks it; return it."""
    if len(value) >= MIN_SECRET_LENGTH:
        _SECRETS.add(value)
    return value


@dataclass(frozen=True)
class Failure:
    """Why a request did not succeed, and whether the whole repository is out."""

    error: str
    outage: bool


def read_secret(env: str | None, file: Path | None, key: str) -> str:
    """A credential from the named environment variable or file; ConfigError names ``key`` and the fix."""
    if env:
        value = os.environ.get(env, "").strip()
        if not value:
            raise errors.ConfigError(f"{key}: environment variable {env} is unset or empty; export the token")
        return remember_secret(value)
    if file is not None:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise errors.ConfigError(
                f"{key}: cannot read {file} ({exc}); put the token on its first line"
            ) from exc
        secret_files.warn_if_exposed(file, key)
        if not lines or not lines[0].strip():
            raise errors.ConfigError(f"{key}: {file} is empty; put the token on its first line")
        return remember_secret(lines[0].strip())
    raise errors.ConfigError(f"{key}: set token_env or token_file")


def open_session(settings: sink_settings.NetworkSinkSettings, bearer: str | None = None) -> requests.Session:
    """A pooled session with TLS settings applied and, if given, a bearer token."""
    session = requests.Session()
    session.headers["User-Agent"] = f"trial-adapter/{__version__}"
    if bearer:
        session.headers["Authorization"] = f"Bearer {bearer}"
    tls = settings.tls
    session.verify = str(tls.ca_bundle) if tls.ca_bundle is not None else tls.verify
    if tls.client_cert is not None:
        session.cert = (str(tls.client_cert), str(tls.client_key)) if tls.client_key else str(tls.client_cert)
    return session


def bearer_token(settings: sink_settings.BearerSinkSettings) -> str | None:
    auth = settings.auth
    if isinstance(auth, fhir_settings.BearerAuth):
        return read_secret(auth.token_env, auth.token_file, "repository.auth")
    return None


def send(
    session: requests.Session, method: str, url: str, *, timeout: float, **kwargs: Any
) -> requests.Response | Failure:
    """One request; a connection-level error becomes an outage ``Failure``."""
    try:
        return session.request(method, url, timeout=timeout, **kwargs)
    except requests.Timeout:
        return Failure(redacted(f"{method} {url}: no answer within {timeout:g} s"), outage=True)
    except requests.RequestException as exc:
        return Failure(redacted(f"{method} {url}: cannot reach the repository ({_short(exc)})"), outage=True)


def failure_of(response: requests.Response, what: str) -> Failure:
    """A failed response as a ``Failure`` whose message has the status, the server's words and the fix."""
    status = response.status_code
    message = f"{what}: HTTP {status} {response.reason or ''}".rstrip()
    said = server_message(response)
    if said:
        message += f": {said}"
    if status in FIXES:
        message += f" ({FIXES[status]})"
    return Failure(redacted(message), outage=is_outage(status))


def is_outage(status: int) -> bool:
    return status in OUTAGE_STATUSES or status >= 500


def server_message(response: requests.Response) -> str:
    """The server's own explanation, from the usual error body shapes, else the start of the body."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text.strip()[:300]
    return _message_in(body)[:500]


def _message_in(body: Any) -> str:
    if isinstance(body, dict):
        if body.get("resourceType") == "OperationOutcome":
            parts = [
                issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code", "")
                for issue in body.get("issue", [])
                if isinstance(issue, dict)
            ]
            return "; ".join(p for p in parts if p)
        for key in ("error", "message", "detail", "error_description"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
            if isinstance(value, dict):
                return _message_in(value)
    return orjson.dumps(body).decode()[:300]


def _short(exc: Exception) -> str:
    """The useful end of a requests/urllib3 error chain: "[Errno 111] Connection refused", not the chain."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        reason = re.search(r"\[SSL: [A-Z_]+\][^'\")]*", text)
        return f"TLS failed: {reason.group(0) if reason else type(exc).__name__}"
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    return errno.group(0).strip() if errno else type(exc).__name__
