"""The ``redcap`` sink: protocol records into a REDCap project through its API.

One API call per batch: "Import Records" (REDCap API documentation; the
project's own copy is at ``<redcap>/api/help/``), a form POST with
``content=record``, ``action=import``, ``format=json``, ``type=flat``,
``overwriteBehavior``, ``data`` (a JSON array of rows, see
``adapter.sinks.redcap_rows``) and ``returnContent=count``,
``returnFormat=json``.  REDCap answers ``{"count": N}``, or an HTTP error
with ``{"error": "..."}``; a rejected import stores nothing, so a rejected
multi-subject import is sent again one subject at a time, and only the
subject REDCap objects to waits.

Import is an upsert keyed by record id, event and repeat instance, so
re-delivering a row changes nothing.  A retraction imports the withdrawn
record's row with its mapped fields blank, always with
``overwriteBehavior=overwrite`` (with ``normal`` REDCap ignores blanks);
REDCap's own logging keeps the history.  The API's "Delete Records" is not
used: it removes a whole subject, not one record.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson
import requests

from adapter.net import credentials, messages
from adapter.sinks import redcap_rows, transport
from adapter.sinks.base import (
    Delivery,
    DeliveryResult,
    PlannedRequest,
    Probe,
    failed,
    last_change_per_record,
    subject_groups,
)
from adapter.sinks.settings import RedcapRepository

REDACTED = credentials.REDACTED  # the token, as a preview shows it
VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")


class RedcapSink:
    batch_size = 500  # rows per import: REDCap imports a few hundred rows per request comfortably

    def __init__(self, settings: RedcapRepository, session: requests.Session | None = None) -> None:
        self.url = settings.url
        self.settings = settings
        self.timeout = settings.timeout_seconds
        self.description = f"redcap:{settings.url}"
        self._session = session
        self._token: str | None = None

    @property
    def token(self) -> str:
        """Read on first use, so a dry run needs no token."""
        if self._token is None:
            self._token = credentials.read_secret(
                self.settings.token_env, self.settings.token_file, key="repository", what="REDCap API token"
            )
        return self._token

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = transport.open_session(self.settings)
        return self._session

    # ------------------------------------------------------------- planning

    def rows(
        self, items: Sequence[Delivery]
    ) -> tuple[dict[str, list[dict[str, str]]], list[Delivery], list[DeliveryResult]]:
        """Rows per overwrite behaviour, the items they settle, and failures for unmappable records.

        A subject with an unmappable record is left out whole; its other
        items get no result and wait behind it.
        """
        upserts: list[dict[str, str]] = []
        blanks: list[dict[str, str]] = []
        settled: list[Delivery] = []
        failures: list[DeliveryResult] = []
        for group in subject_groups(items):
            group_upserts: list[dict[str, str]] = []
            group_blanks: list[dict[str, str]] = []
            for item in last_change_per_record(group):
                try:
                    row = self._row(item)
                except redcap_rows.NotMappable as exc:
                    failures.append(DeliveryResult(item.item_id, ok=False, error=str(exc)))
                    break
                if row is not None:
                    (group_upserts if item.operation == "upsert" else group_blanks).append(row)
            else:
                upserts += group_upserts
                blanks += group_blanks
                settled += group
        behaviour = self.settings.overwrite_behavior
        field = self.settings.record_id_field
        by_behaviour: dict[str, list[dict[str, str]]] = {}
        if behaviour == "overwrite":
            by_behaviour["overwrite"] = redcap_rows.merged([*upserts, *blanks], field)
        else:
            by_behaviour["normal"] = redcap_rows.merged(upserts, field)
            by_behaviour["overwrite"] = redcap_rows.merged(blanks, field)
        return {k: v for k, v in by_behaviour.items() if v}, settled, failures

    def _row(self, item: Delivery) -> dict[str, str] | None:
        field_map = self.settings.records.get(item.record_type)
        if field_map is None:
            raise redcap_rows.NotMappable(
                f"no [repository.records.{item.record_type}] table; map the record type or set skip = true"
            )
        if field_map.skip:
            return None
        record = item.content
        if record is None:
            raise redcap_rows.NotMappable(
                f"retraction of {item.record_type} {item.record_id} came without the withdrawn record"
            )
        return redcap_rows.row(
            record, field_map, self.settings.record_id_field, blank=item.operation == "retract"
        )

    def form(self, rows: list[dict[str, str]], behaviour: str, token: str) -> dict[str, str]:
        """The "Import Records" form fields, in the order REDCap documents them."""
        return {
            "token": token,
            "content": "record",
            "action": "import",
            "format": "json",
            "type": "flat",
            "overwriteBehavior": behaviour,
            "forceAutoNumber": "false",
            "data": orjson.dumps(rows).decode(),
            "returnContent": "count",
            "returnFormat": "json",
        }

    def preview(self, batch: Sequence[Delivery]) -> list[PlannedRequest]:
        by_behaviour, settled, failures = self.rows(batch)
        ids = tuple(item.item_id for item in settled if not self._skipped(item))
        plans = []
        for behaviour, rows in by_behaviour.items():
            body: dict[str, Any] = self.form(rows, behaviour, REDACTED)
            body["data"] = rows  # shown parsed, for reading
            plans.append(PlannedRequest("POST", self.url, body, ids))
        skipped = [item for item in settled if self._skipped(item)]
        if skipped:
            types = sorted({item.record_type for item in skipped})
            body = {"reason": f"skip = true for {', '.join(types)}"}
            plans.append(PlannedRequest("SKIP", "(not sent)", body, tuple(i.item_id for i in skipped)))
        plans += [PlannedRequest("NONE", "(not sent)", {"error": f.error}, (f.item_id,)) for f in failures]
        return plans

    def _skipped(self, item: Delivery) -> bool:
        field_map = self.settings.records.get(item.record_type)
        return field_map is not None and field_map.skip

    # ------------------------------------------------------------- delivering

    def deliver(self, batch: Sequence[Delivery]) -> list[DeliveryResult]:
        by_behaviour, settled, results = self.rows(batch)
        if not settled:
            return results
        failure = self._import(by_behaviour)
        if failure is None:
            return results + [DeliveryResult(item.item_id, ok=True) for item in settled]
        if failure.outage or len({item.subject_id for item in settled}) == 1:
            return results + failed(settled, failure.error, outage=failure.outage)
        # Rejected: REDCap stored nothing; find the subject(s) it objects to.
        for group in subject_groups(settled):
            alone, _, _ = self.rows(group)
            failure = self._import(alone)
            if failure is None:
                results += [DeliveryResult(item.item_id, ok=True) for item in group]
                continue
            results += failed(group, failure.error, outage=failure.outage)
            if failure.outage:
                break
        return results

    # ------------------------------------------------------------- checking

    def probe(self) -> Probe:
        """REDCap's "Export REDCap Version" (``content=version``) with the token: reads and writes nothing.

        REDCap answers the bare version number, e.g. ``14.0.1``, or 403 with
        ``{"error": ...}`` for a token it does not know.
        """
        what = "REDCap version export"
        form = {"token": self.token, "content": "version", "format": "json", "returnFormat": "json"}
        outcome = transport.send(
            self.session,
            "POST",
            self.url,
            timeout=self.timeout,
            data=form,
            headers={"Accept": "application/json"},
        )
        if isinstance(outcome, transport.Failure):
            return Probe(False, outcome.error)
        if not outcome.ok:
            return Probe(False, transport.failure_of(outcome, what).error)
        version = outcome.text.strip().strip('"')
        if not VERSION.match(version):
            return Probe(
                False,
                f"{what}: {self.url} did not answer with a REDCap version; check [repository] url "
                '(the API endpoint, e.g. "https://redcap.example.org/api/")',
            )
        return Probe(True, f"REDCap {version} at {self.url}; the API token is accepted")

    def _import(self, by_behaviour: dict[str, list[dict[str, str]]]) -> transport.Failure | None:
        for behaviour, rows in by_behaviour.items():
            outcome = transport.send(
                self.session,
                "POST",
                self.url,
                timeout=self.timeout,
                data=self.form(rows, behaviour, self.token),
                headers={"Accept": "application/json"},
            )
            what = f"REDCap import of {len(rows)} row(s)"
            if isinstance(outcome, transport.Failure):
                return outcome
            if not outcome.ok:
                return transport.failure_of(outcome, what)
            failure = _check_count(outcome, what)
            if failure is not None:
                return failure
        return None


def _check_count(response: requests.Response, what: str) -> transport.Failure | None:
    """A successful import answers ``{"count": N}``; anything else (even with HTTP 200) is a failure."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return transport.Failure(f"{what}: REDCap's answer is not JSON: {response.text[:200]}", outage=False)
    if isinstance(body, dict) and "count" in body:
        return None
    return transport.Failure(f"{what}: REDCap answered {messages.server_said(response)}", outage=False)
