"""Console sessions: a signed cookie that names a row the server can end.

The cookie holds no secret and no PHI, only a random nonce, the user id and
the issue time, signed with HMAC-SHA256 under the console's own secret
(``console.session_secret_file``, never the site secret that keys outgoing
hashes).  A signed cookie cannot be taken back, so a logged-in cookie counts
only while its row in ``console_sessions`` (``models.SessionRow``, keyed by a
hash of the nonce) lives: not revoked, used within ``[console] idle_minutes``
and younger than ``session_hours``.  Every request checks it
(``app._sessions``).  Logging out, a password change and disabling the user
revoke every row of that user (``end_all``) in the state database, so a
``trial-adapter users`` change ends the sessions of a running console at
once.  A role change ends nothing: the role is read on every request.

Cookies are HttpOnly and SameSite=Lax, and Secure when the request came over
HTTPS (directly, or via a proxy in ``[console] trusted_proxies`` that sends
``X-Forwarded-Proto``) or ``console.secure_cookies`` says so.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter import errors, privacy, secret_files
from adapter.store import models

COOKIE_NAME = "ta_console"
MIN_SECRET_BYTES = 32
# A session's last_seen_at is written at most this often, not on every page,
# so idle expiry is exact to the minute at one write per minute and user.
TOUCH_EVERY = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class ConsoleSession:
    """One browser's session; ``user_id`` is None before login."""

    nonce: str
    user_id: int | None = None
    issued_at: int = 0

    @classmethod
    def anonymous(cls) -> ConsoleSession:
        return cls(nonce=secrets.token_urlsafe(18), issued_at=int(time.time()))

    def logged_in(self, user_id: int) -> ConsoleSession:
        """A new session for the user: a fresh nonce, so a planted cookie cannot be promoted."""
        return replace(ConsoleSession.anonymous(), user_id=user_id, issued_at=int(time.time()))

    def ended(self) -> ConsoleSession:
        """This browser after its login ended elsewhere (revoked, idle): anonymous, same nonce.

        Keeping the nonce keeps the CSRF token of a form left open, so sending
        it says "log in again" rather than "form expired".
        """
        return ConsoleSession(nonce=self.nonce, issued_at=int(time.time()))

    @property
    def row_id(self) -> str:
        """Its ``console_sessions`` key: a hash, so the table holds nothing a cookie could be made of."""
        return hashlib.sha256(b"console-session|" + self.nonce.encode()).hexdigest()


class SessionCodec:
    """Turns sessions into signed cookie values and back."""

    def __init__(self, secret: bytes, max_age_seconds: int) -> None:
        self._key = hashlib.sha256(b"session|" + secret).digest()
        self._csrf_key = hashlib.sha256(b"csrf|" + secret).digest()
        self.max_age = max_age_seconds

    def dumps(self, session: ConsoleSession) -> str:
        body = _b64(orjson.dumps({"n": session.nonce, "u": session.user_id, "t": session.issued_at}))
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
            )
        except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            return None
        if (now if now is not None else time.time()) - session.issued_at > self.max_age:
            return None
        return session

    def csrf_token(self, session: ConsoleSession) -> str:
        """The token every form of this session carries (synchronizer token, bound to the nonce)."""
        return hmac.new(self._csrf_key, session.nonce.encode(), hashlib.sha256).hexdigest()

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode(), hashlib.sha256).digest()


def start(db: Session, session: ConsoleSession, *, now: dt.datetime | None = None) -> None:
    """Record a new login (the caller commits)."""
    if session.user_id is None:
        raise ValueError("only a logged-in session has a row")
    moment = now or models.utcnow()
    db.add(
        models.SessionRow(id=session.row_id, user_id=session.user_id, created_at=moment, last_seen_at=moment)
    )


def is_live(
    db: Session,
    session: ConsoleSession,
    *,
    idle: dt.timedelta,
    lifetime: dt.timedelta,
    now: dt.datetime | None = None,
) -> bool:
    """Whether this logged-in cookie still counts; moves its ``last_seen_at`` on (the caller commits)."""
    if session.user_id is None:
        return False
    row = db.get(models.SessionRow, session.row_id)
    if row is None or row.user_id != session.user_id or row.revoked_at is not None:
        return False
    moment = now or models.utcnow()
    seen = row.last_seen_at
    if moment - row.created_at > lifetime or moment - seen > idle:
        return False
    if moment - seen >= TOUCH_EVERY:
        row.last_seen_at = moment
    return True


def end_all(db: Session, user_id: int, why: str, *, now: dt.datetime | None = None) -> int:
    """Revoke every open session of a user (logout, new password, disabled); the caller commits."""
    result = db.execute(
        sa.update(models.SessionRow)
        .where(models.SessionRow.user_id == user_id, models.SessionRow.revoked_at.is_(None))
        .values(revoked_at=now or models.utcnow(), revoked_why=why)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def forget_dead(
    db: Session, *, idle: dt.timedelta, lifetime: dt.timedelta, now: dt.datetime | None = None
) -> None:
    """Delete rows of sessions that have ended by age or idleness anyway (run at each login)."""
    moment = now or models.utcnow()
    db.execute(
        sa.delete(models.SessionRow).where(
            sa.or_(
                models.SessionRow.created_at < moment - lifetime,
                models.SessionRow.last_seen_at < moment - idle,
            )
        )
    )


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
    secret_files.warn_if_exposed(path, "console session secret")
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
