"""When a failed request is worth another try, and how long to wait before it.

Modelled on cumulus-fhir-support ``http.py``: a request is sorted into
*temporary* failures (timeouts, dropped connections, 408, 429, 500, 502,
503, 504), worth retrying with exponential backoff and jitter, and *fatal*
ones, which are not.  ``Retry-After`` (seconds or an HTTP date,
https://www.rfc-editor.org/rfc/rfc9110#name-retry-after) is honoured but
capped, and the total wait per request is capped too, so a server asking for
five hours (smart-fetch ``bulk_utils.py`` saw Cerner do that) cannot stall a
scheduled pass.

A source retries within its pass with this policy (``adapter.fhir.http``);
a sink does not retry at all, because the outbox keeps failed items and
retries them with a backoff that survives restarts (``adapter.delivery.outbox``).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from dataclasses import dataclass

# https://developer.mozilla.org/en-US/docs/Web/HTTP/Status: the statuses a retry may cure.
# 500 is included because servers (Oracle Health among them, per cumulus-fhir-support)
# use it for blips as well as for real faults, and the retries are few and spaced.
TEMPORARY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request; see ``RetrySettings`` in the config for the meaning."""

    attempts: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    retry_after_cap: float = 120.0
    max_wait: float = 600.0

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1-based).

        The server's Retry-After wins when given (capped); otherwise exponential
        backoff with "equal jitter" (half fixed, half random), so many adapters
        hit by the same outage do not come back in lockstep.
        """
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        ceiling = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Retry-After in seconds from its two forms, delay-seconds and HTTP-date (RFC 9110 §10.2.3)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())
