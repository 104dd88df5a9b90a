"""The ``http`` sink: one JSON document per record on a plain REST endpoint.

``PUT <url>/<record type>/<record id>`` with the record as the body, and
``DELETE`` on the same URL to retract it.  Both are idempotent by HTTP's
definition (https://www.rfc-editor.org/rfc/rfc9110#name-idempotent-methods),
which is what lets the outbox redeliver after a crash: a second PUT stores
the same document, and a 404 or 410 on DELETE means the record is already
gone, which is what a retraction wants.

One request per item, in outbox order.  After a rejected item the subject's
later items are not sent (they wait for the next pass, behind it); after an
outage nothing more is sent (see ``adapter.sinks.base``).  Nor after
``should_stop`` says the service is stopping: a batch of 500 requests can
outlast the service's stop timeout, so the check runs between requests and
the untried items get no result (they stay queued, see ``adapter.delivery.outbox``).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Sequence

import orjson
import requests

from adapter.sinks import transport
from adapter.sinks.base import Delivery, DeliveryResult, PlannedRequest, Probe
from adapter.sinks.settings import HttpRepository

GONE = frozenset({404, 410})
NO_HEAD = frozenset({405, 501})  # the endpoint does not answer HEAD: ask with GET (still no write)


class HttpSink:
    batch_size = 500  # one request per item anyway; keeps a pass's transactions short

    def __init__(
        self,
        settings: HttpRepository,
        session: requests.Session | None = None,
        *,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.base = settings.url.rstrip("/")
        self.timeout = settings.timeout_seconds
        self.description = f"http:{self.base}"
        self._settings = settings
        self._session = session
        self._should_stop = should_stop or (lambda: False)

    @property
    def session(self) -> requests.Session:
        """Opened (and credentials read) on first use, so a dry run needs no token."""
        if self._session is None:
            self._session = transport.open_session(self._settings, transport.bearer_token(self._settings))
        return self._session

    def plan(self, item: Delivery) -> PlannedRequest:
        url = "/".join(
            (
                self.base,
                urllib.parse.quote(item.record_type, safe=""),
                urllib.parse.quote(item.record_id, safe=""),
            )
        )
        if item.operation == "upsert":
            return PlannedRequest("PUT", url, item.payload, (item.item_id,))
        return PlannedRequest("DELETE", url, None, (item.item_id,))

    def preview(self, batch: Sequence[Delivery]) -> list[PlannedRequest]:
        return [self.plan(item) for item in batch]

    def deliver(self, batch: Sequence[Delivery]) -> list[DeliveryResult]:
        results: list[DeliveryResult] = []
        held: set[str] = set()
        for item in batch:
            if self._should_stop():
                break  # no results for the rest: they wait, untried, for the next pass
            if item.subject_id in held:
                continue  # no result: it waits behind the subject's failed item
            failure = self._send(self.plan(item))
            if failure is None:
                results.append(DeliveryResult(item.item_id, ok=True))
                continue
            results.append(DeliveryResult(item.item_id, ok=False, error=failure.error, outage=failure.outage))
            if failure.outage:
                break
            held.add(item.subject_id)
        return results

    def probe(self) -> Probe:
        """HEAD (or GET, if HEAD is not allowed) on the base URL, with the credentials; never a write.

        The endpoint need not answer anything useful there (a 404 is fine):
        what counts is that it answers, and does not refuse the credentials
        (401, 403) or fail (5xx).
        """
        method = "HEAD"
        outcome = transport.send(self.session, method, self.base, timeout=self.timeout)
        if not isinstance(outcome, transport.Failure) and outcome.status_code in NO_HEAD:
            method = "GET"
            outcome = transport.send(self.session, method, self.base, timeout=self.timeout)
        if isinstance(outcome, transport.Failure):
            return Probe(False, outcome.error)
        status = outcome.status_code
        if status in transport.OUTAGE_STATUSES or status >= 500:
            return Probe(False, transport.failure_of(outcome, f"{method} {self.base}").error)
        auth = "credentials not refused" if "Authorization" in self.session.headers else "no credentials set"
        return Probe(True, f"{self.base} answers ({method}: HTTP {status}); {auth}")

    def _send(self, request: PlannedRequest) -> transport.Failure | None:
        kwargs = {}
        if request.body is not None:
            kwargs = {
                "data": orjson.dumps(request.body, option=orjson.OPT_SORT_KEYS),
                "headers": {"Content-Type": "application/json"},
            }
        outcome = transport.send(self.session, request.method, request.target, timeout=self.timeout, **kwargs)
        if isinstance(outcome, transport.Failure):
            return outcome
        if outcome.ok or (request.method == "DELETE" and outcome.status_code in GONE):
            return None
        return transport.failure_of(outcome, f"{request.method} {request.target}")
