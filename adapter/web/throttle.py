"""Login rate limit: a few wrong passwords, then a pause.

Password guessing is the one attack a console on a hospital network is sure
to meet.  Attempts are counted per user name and per client address in a
sliding window (OWASP's "account lockout" advice, but temporary, so an
attacker cannot lock a data manager out for good); once either count
reaches the limit, login answers 429 until the oldest attempt leaves the
window.

Checking the limit and counting the attempt are one step under one lock
(``attempt``), taken *before* the password is checked.  An argon2 check takes
tens of milliseconds; when the failure was counted only after it, 40 parallel
wrong passwords for one user all got past the limit (issue 14).  Now every
attempt counts while it runs, and one that turns out right is taken back:
the user name's count is cleared, but the address only loses this one
attempt, never its earlier failures, so "four guesses, then log in to my own
account" cannot reset the address's count.

Counts live in memory: ``trial-adapter console`` serves from one process,
where the lock makes the step atomic; a restart forgives, which avoids
writing to the state database on every failed attempt.  The client address
is the TCP peer, or what a proxy listed in ``[console] trusted_proxies``
reports (``app.create_app``).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 15 * 60
MAX_KEYS = 10_000


@dataclass(frozen=True)
class Attempt:
    """One login attempt: admitted and counted under ``ticket``, or refused for ``retry_after`` seconds."""

    keys: tuple[str, ...]
    ticket: int = 0
    retry_after: int = 0

    @property
    def refused(self) -> bool:
        return self.retry_after > 0


class LoginThrottle:
    def __init__(
        self,
        max_failures: int,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self._clock = clock
        self._attempts: dict[str, deque[tuple[float, int]]] = {}
        self._tickets = itertools.count(1)
        self._lock = threading.Lock()

    def attempt(self, *keys: str) -> Attempt:
        """Refuse if any key is at the limit, else count the attempt for every key: one atomic step."""
        now = self._clock()
        with self._lock:
            wait = self._wait(keys, now)
            if wait:
                return Attempt(keys, retry_after=wait)
            if len(self._attempts) > MAX_KEYS:  # guessing many user names must not grow memory for ever
                for stale in [k for k in self._attempts if not self._recent(k, now)]:
                    del self._attempts[stale]
            ticket = next(self._tickets)
            for key in keys:
                self._recent(key, now).append((now, ticket))
            return Attempt(keys, ticket=ticket)

    def succeeded(self, attempt: Attempt, *, forgive: str) -> None:
        """The password was right: clear the ``forgive`` key (the user name), withdraw it from the rest."""
        with self._lock:
            for key in attempt.keys:
                if key == forgive:
                    self._attempts.pop(key, None)
                elif key in self._attempts:
                    times = self._attempts[key]
                    self._attempts[key] = deque(entry for entry in times if entry[1] != attempt.ticket)

    def retry_after(self, *keys: str) -> int:
        """Seconds until a login for these keys may be tried again (0: now); counts nothing."""
        now = self._clock()
        with self._lock:
            return self._wait(keys, now)

    def _wait(self, keys: tuple[str, ...], now: float) -> int:
        wait = 0.0
        for key in keys:
            if key in self._attempts:
                times = self._recent(key, now)
                if len(times) >= self.max_failures:
                    wait = max(wait, times[0][0] + self.window - now)
        return int(wait) + 1 if wait > 0 else 0

    def _recent(self, key: str, now: float) -> deque[tuple[float, int]]:
        times = self._attempts.setdefault(key, deque())
        while times and times[0][0] <= now - self.window:
            times.popleft()
        return times
