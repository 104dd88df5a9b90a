"""The probes' framework: their settings, row names, and the ``Prober`` that runs their searches.

Every probe is a function of one ``Prober``: the site's settings and client,
the roster patients found so far and what the earlier probes learnt.  Its
``search`` reads one answer as the probes need it (a refusal is an answer,
not an error), bounded by the probes' time budget; ``count_misfits`` checks
a plain search's answer against its search with ``adapter.fhir.verify``, as
the sync does every page, and keeps the tally for the fit row.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import email.utils
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapter import errors
from adapter import roster as roster_mod
from adapter.fhir import bundles, http, search_terms, verify
from adapter.fhir import settings as fhir_settings
from adapter.fhir.wanted import Wanted
from adapter.net import messages

PROBE_PATIENTS = 3  # roster patients the probes search for
ROSTER_TRIES = 5  # roster identifiers tried to find them
PROBE_COUNT = 50  # _count of the comparison searches
PROBE_PAGES = 2  # pages followed per comparison search
BUDGET_SECONDS = 60.0  # all probes of one site together
AFTER_NOW = dt.timedelta(hours=1)
UNKNOWN_PARAM = "_adapter_probe"  # a parameter no server supports
LARGE_COUNT = 1000  # the largest page_size the adapter allows
# One probe request: two tries, a few seconds of waiting at most, a 30 s read timeout.
PROBE_ATTEMPTS = 2
PROBE_MAX_WAIT = 10.0
PROBE_TIMEOUT = 30.0

ITEM_IDENTIFIERS = "behaviour: OR-list of identifiers"
ITEM_PATIENTS = "behaviour: OR-list of patients"
ITEM_LAST_UPDATED = "behaviour: _lastUpdated"
ITEM_COUNT = "behaviour: _count"
ITEM_NEXT_LINKS = "behaviour: next links"
ITEM_CATEGORY = "behaviour: Observation category"
ITEM_STRICT = "behaviour: strict handling"
ITEM_FIT = "behaviour: results fit the search"
ITEM_ROSTER = "behaviour: roster patients"

# verify's fault kinds in words, for a row.
FAULT_WORDS = {
    "wrong_type": "of another resource type",
    "unasked_patient": "of patients that were not asked for",
    "unasked_code": "with codes that were not asked for",
    "unasked_category": "in categories that were not asked for",
    "last_updated_ignored": "last updated before the asked _lastUpdated",
}


class OutOfTime(errors.SourceError):
    """The probes' time budget is spent; the remaining probes are not run."""


@dataclass(frozen=True)
class Answer:
    """One search answer as the probes read it: refused (4xx, OperationOutcome) or a page."""

    refused: str | None  # the server's words (scrubbed) when it refused the search
    resources: list[dict[str, Any]]
    next_url: str | None
    total: int | None


@dataclass(frozen=True)
class Collected:
    """A search read up to a few pages."""

    refused: str | None
    resources: list[dict[str, Any]]
    complete: bool  # the last page read had no next link
    total: int | None

    @property
    def ids(self) -> set[str]:
        return {_ref(r) for r in self.resources}


@dataclass(frozen=True)
class DataSearch:
    """A search the sync runs for a resource type, without its patients and paging."""

    resource_type: str
    filters: tuple[tuple[str, str], ...] = ()

    def params(self, patient_ids: Sequence[str], count: int, **extra: str) -> dict[str, str]:
        patients = ",".join(search_terms.escape_token(p) for p in patient_ids)
        return {"patient": patients, **dict(self.filters), **extra, "_count": str(count)}

    @property
    def described(self) -> str:
        names = "&".join(f"{name}=…" for name, _ in self.filters)
        return f"{self.resource_type}?patient=…" + (f"&{names}" if names else "")


@dataclass
class Data:
    """The data search the comparison probes use, and what one search per patient found."""

    search: DataSearch
    singles: dict[str, Collected]  # patient id -> its one-patient search
    or_list_ok: bool = False

    @property
    def richest(self) -> str:
        return max(self.singles, key=lambda p: len(self.singles[p].ids))


class Prober:
    """One site's probing: its settings, its client, and what the probes found so far."""

    def __init__(
        self,
        site: str,
        server: fhir_settings.RestSource,
        client: http.FhirClient,
        roster: roster_mod.Roster,
        wanted: Wanted,
        budget_seconds: float,
    ) -> None:
        self.site = site
        self.server = server
        self.client = client
        self.budget = budget_seconds
        self.deadline = time.monotonic() + budget_seconds
        self.headers = bundles.SEARCH_HEADERS if server.strict_search else bundles.LENIENT_HEADERS
        entries = sorted(roster.entries, key=lambda e: (e.identifier_system, e.identifier_value))
        self.entries = entries[:ROSTER_TRIES]
        self.roster_size = len(entries)
        self.sensitive: set[str] = {e.identifier_value for e in self.entries}
        observation_codes = wanted.codes_for("Observation") or ()
        self.codes = search_terms.code_tokens(observation_codes)[: server.codes_per_query]
        self.found: list[tuple[str, str]] = []  # (identifier token, patient id) per roster patient found
        self.unasked_patients = 0  # patients a one-identifier search returned without that identifier
        self.server_time: dt.datetime | None = None
        self.category_required: bool | None = None  # None: not known, or Observation not searchable
        self.data: Data | None = None
        self.misfits: collections.Counter[str] = collections.Counter()  # in plain searches' answers
        self.checked = 0  # resources of plain searches checked against their search

    # ------------------------------------------------------------ searches

    def count_misfits(
        self,
        resource_type: str,
        params: Mapping[str, str],
        answer: Answer | Collected,
        *,
        plain: bool = True,
    ) -> collections.Counter[str]:
        """verify's fault kinds among the answer's resources; a plain search's count toward the fit row."""
        found = _misfits(resource_type, params, answer.resources)
        if plain:
            self.misfits.update(found)
            self.checked += len(answer.resources)
        return found

    def collect(self, resource_type: str, params: Mapping[str, str], pages: int) -> Collected:
        answer = self.search(resource_type, params)
        if answer.refused is not None:
            return Collected(answer.refused, [], False, None)
        resources = list(answer.resources)
        next_url, read = answer.next_url, 1
        while next_url is not None and read < pages and self.client.same_server(next_url):
            # Followed as the sync follows it when repairing: the next-links probe judges paging itself.
            lost = verify.lost_params(resource_type, params, next_url)
            page = self.search(verify.repaired(next_url, params, lost) if lost else next_url)
            if page.refused is not None:
                break
            resources += page.resources
            next_url, read = page.next_url, read + 1
        return Collected(None, resources, next_url is None, answer.total)

    def search(
        self, url: str, params: Mapping[str, str] | None = None, *, headers: Mapping[str, str] | None = None
    ) -> Answer:
        """One GET; a 4xx other than 401/403 or an OperationOutcome is a refusal, not an error."""
        if time.monotonic() > self.deadline:
            raise OutOfTime("the probes' time limit ran out")
        try:
            body, response = self.client.get_json(
                url, params=params, headers=headers or self.headers, sensitive=self.sensitive
            )
        except errors.FatalNetworkError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (401, 403):
                return Answer(self._said(exc), [], None, None)
            raise
        self._note_time(body, response.headers)
        kind = body.get("resourceType")
        if kind == "OperationOutcome":
            said = messages.scrub(messages.outcome_text(body) or "an OperationOutcome", self.sensitive)
            return Answer(f"200 with an OperationOutcome: {said}", [], None, None)
        if kind != "Bundle":
            raise errors.SourceError(
                f"site {self.site}: {messages.redact_url(response.url)}: expected a Bundle of search "
                f"results, got {str(kind)[:40]!r}"
            )
        entries = body.get("entry") or []
        resources = [
            entry["resource"]
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, dict)
            and isinstance(entry.get("resource"), dict)
            and entry["resource"].get("resourceType") != "OperationOutcome"
            and (entry.get("search") or {}).get("mode") not in ("include", "outcome")
        ]
        total = body.get("total") if isinstance(body.get("total"), int) else None
        return Answer(None, resources, _next_link(response.url, body), total)

    def _said(self, exc: errors.NetworkError) -> str:
        """``400 Bad Request: <the server's words>`` from a network error, without site, URL and fix."""
        text = str(exc)
        _, _, said = text.partition(" answered ")
        fix = http.FIXES.get(exc.status or 0)
        if fix and said.endswith(f"; {fix}"):
            said = said[: -len(fix) - 2]
        return messages.scrub((said or text)[:300], self.sensitive)

    def _note_time(self, body: dict[str, Any], headers: Mapping[str, str]) -> None:
        meta = body.get("meta")
        stamp = meta.get("lastUpdated") if isinstance(meta, dict) else None
        moments = [bundles.parse_instant(stamp) if isinstance(stamp, str) else None, self.server_time]
        if headers.get("Date"):
            with contextlib.suppress(TypeError, ValueError):
                moments.append(_http_date(headers["Date"]))
        self.server_time = max(filter(None, moments), default=None)


@contextlib.contextmanager
def bounded(client: http.FhirClient) -> Iterator[None]:
    """Few, short retries while probing: a probe must not wait out the sync's retry budget."""
    retry, timeout = client.retry, client.timeout
    client.retry = dataclasses.replace(
        retry,
        attempts=min(retry.attempts, PROBE_ATTEMPTS),
        max_wait=min(retry.max_wait, PROBE_MAX_WAIT),
        retry_after_cap=min(retry.retry_after_cap, PROBE_MAX_WAIT),
        max_backoff=min(retry.max_backoff, PROBE_MAX_WAIT),
    )
    client.timeout = (min(timeout[0], PROBE_TIMEOUT), min(timeout[1], PROBE_TIMEOUT))
    try:
        yield
    finally:
        client.retry, client.timeout = retry, timeout


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def _misfits(
    resource_type: str, params: Mapping[str, str], resources: Iterable[dict[str, Any]]
) -> collections.Counter[str]:
    expected = verify.Expected.of_search(resource_type, params)
    found: collections.Counter[str] = collections.Counter()
    for resource in resources:
        try:
            verify.check(expected, resource, "probe")
        except errors.ServerFault as fault:
            found[fault.fault] += 1
    return found


def words(faults: Mapping[str, int]) -> str:
    return " and ".join(
        f"{count} resource(s) {FAULT_WORDS.get(kind, kind)}" for kind, count in sorted(faults.items())
    )


def _next_link(page_url: str, body: dict[str, Any]) -> str | None:
    links = body.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return urllib.parse.urljoin(page_url, link["url"].strip())
    return None


def _http_date(value: str) -> dt.datetime | None:
    moment = email.utils.parsedate_to_datetime(value)
    return moment if moment.tzinfo is not None else None
