"""Signed session cookies: who is logged in, and the seed of their CSRF token.

The cookie holds no secret and no PHI, only a random nonce, the user id, the
issue time and a fingerprint of the user's password hash, signed with
HMAC-SHA256 under the console's own secret (``console.session_secret_file``,
never the site secret that keys outgoing hashes).  The fingerprint means a
password change ends every session of that user; ``disabled`` users are
refused on each request (``auth.current_user``).  Cookies are HttpOnly and
SameSite=Lax, and Secure when the request came over HTTPS (directly or via a
proxy's ``X-Forwarded-Proto``) or ``console.secure_cookies`` says so.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from adapter import errors, privacy

COOKIE_NAME = "ta_console"
MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class ConsoleSession:
    """One browser's session; ``user_id`` is None before login."""

    nonce: str
    user_id: int | None = None
    issued_at: int = 0
    fingerprint: str = ""

    @classmethod
    def anonymous(cls) -> ConsoleSession:
        return cls(nonce=secrets.token_urlsafe(18), issued_at=int(time.time()))

    def logged_in(self, user_id: int, fingerprint: str) -> ConsoleSession:
        """A new session for the user: a fresh nonce, so a planted cookie cannot be promoted."""
        return replace(
            ConsoleSession.anonymous(), user_id=user_id, fingerprint=fingerprint, issued_at=int(time.time())
        )


class SessionCodec:
    """Turns sessions into signed cookie values and back."""

    def __init__(self, secret: bytes, max_age_seconds: int) -> None:
        self._key = hashlib.sha256(b"session|" + secret).digest()
        self._csrf_key = hashlib.sha256(b"csrf|" + secret).digest()
        self._fingerprint_key = hashlib.sha256(b"fingerprint|" + secret).digest()
        self.max_age = max_age_seconds

    def dumps(self, session: ConsoleSession) -> str:
        body = _b64(
            orjson.dumps(
                {"n": session.nonce, "u": session.user_id, "t": session.issued_at, "f": session.fingerprint}
            )
        )
        return f"{body}.{_b64(self._sign(body))}"

    def loads(self, value: str | None, *, now: float | None = None) -> ConsoleSession | None:
        """The session in a cookie value; None if absent, forged, malformed or expired."""
        if not value or value.count(".") != 1:
            return None
        body, signature = value.split(".")
        try:
            if not hmac.compare_digest(_unb64(signature), self._sign(body)):
                return None
            data = orjson.loads(_unb64(body))
            session = ConsoleSession(
                nonce=str(data["n"]),
                user_id=int(data["u"]) if data["u"] is not None else None,
                issued_at=int(data["t"]),
                fingerprint=str(data["f"]),
            )
        except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            return None
        if (now if now is not None else time.time()) - session.issued_at > self.max_age:
            return None
        return session

    def csrf_token(self, session: ConsoleSession) -> str:
        """The token every form of this session carries (synchronizer token, bound to the nonce)."""
        return hmac.new(self._csrf_key, session.nonce.encode(), hashlib.sha256).hexdigest()

    def password_fingerprint(self, password_hash: str) -> str:
        return hmac.new(self._fingerprint_key, password_hash.encode(), hashlib.sha256).hexdigest()[:20]

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode(), hashlib.sha256).digest()


def load_or_create_secret(path: Path) -> bytes:
    """The console's signing secret; created (0600) on first start, like ``keygen``."""
    if not path.exists():
        privacy.write_secret(path)
    try:
        data = path.read_bytes().strip()
    except OSError as exc:
        raise errors.ConfigError(
            f"console.session_secret_file: cannot read {path} ({exc.strerror or exc})"
        ) from exc
    if len(data) < MIN_SECRET_BYTES:
        raise errors.ConfigError(
            f"console.session_secret_file: {path} holds fewer than {MIN_SECRET_BYTES} bytes; "
            "delete it and the console creates a new one (everyone logs in again)"
        )
    return data


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
