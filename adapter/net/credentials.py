"""Credentials for servers: read from where the config points, and kept out of every message.

A token or password is read from an environment variable or from the first
line of a file the config names, never from the config itself; a file that
others can read draws the warning every secret file gets
(``adapter.secret_files``).  Each value read is remembered, so ``redacted``
can blank it wherever a server or a library echoes it back into a failure
message, along with anything shaped like a credential (an ``Authorization``
header, a bearer token, a URL's password, a ``token=`` query or form field).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from adapter import errors, secret_files

REDACTED = "(redacted)"
MIN_SECRET_LENGTH = 4  # shorter values would blank ordinary words

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


def read_secret(env: str | None, file: Path | None, *, key: str, what: str) -> str:
    """A credential from the named environment variable or file (its first line).

    ``key`` is the config table that names it (``repository.auth``), ``what``
    the credential in words (``bearer token``); a ``ConfigError`` names both
    and the fix, never the value.
    """
    if env:
        value = os.environ.get(env, "").strip()
        if not value:
            raise errors.ConfigError(
                f"{key}: environment variable {env} is unset or empty; export the {what}"
            )
        return remember_secret(value)
    if file is None:
        raise errors.ConfigError(f"{key}: no {what} configured")
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise errors.ConfigError(
            f"{key}: cannot read {file} ({reason}); put the {what} on its first line"
        ) from None
    secret_files.warn_if_exposed(file, what)
    value = lines[0].strip() if lines else ""
    if not value:
        raise errors.ConfigError(f"{key}: {file} is empty; put the {what} on its first line")
    return remember_secret(value)


def remember_secret(value: str) -> str:
    """Note a credential so ``redacted`` blanks it; return it."""
    if len(value) >= MIN_SECRET_LENGTH:
        _SECRETS.add(value)
    return value


def redacted(text: str) -> str:
    """``text`` with the secrets this process read and anything shaped like a credential blanked."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for shape, replacement in _CREDENTIAL_SHAPES:
        text = shape.sub(replacement, text)
    return text
