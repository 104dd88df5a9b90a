"""Addressing an issue in the console by an opaque token instead of its key.

Issue keys contain source references (``demo-east|not_final|Observation/123``)
that viewers must not see, not even in the address bar or the browser
history, so the console's issue pages, and the links to them, name an issue
by a keyed HMAC of its key.
"""

from __future__ import annotations

import hashlib
import hmac
import threading

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.store import models


class IssueTokens:
    """Issue key <-> opaque token for URLs (HMAC, so tokens cannot be guessed from keys)."""

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"issue-token|" + secret).digest()
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()

    def token(self, key: str) -> str:
        token = hmac.new(self._key, key.encode(), hashlib.sha256).hexdigest()[:24]
        with self._lock:
            self._known[token] = key
        return token

    def key(self, session: Session, token: str) -> str | None:
        with self._lock:
            known = self._known.get(token)
        if known is not None:
            return known
        for key in session.scalars(sa.select(models.IssueRow.key)):
            if self.token(key) == token:
                return key
        return None
