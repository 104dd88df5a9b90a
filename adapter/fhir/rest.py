"""The FHIR REST search source: roster patients by identifier, their data in batches, page by page.

docs/design.md §2.  Patients are found by searching their roster identifiers
(``Patient?identifier=system|value,...``), never by name.  Then, per
resource type, one search per batch of patients (``patient=a,b,c``; as many
as fit the URL budget, halved if the server refuses: ``adapter.fhir.batching``), with
the codes the caller wants (``adapter.fhir.wanted``; for a sync, the
catalog's mapped Observation codes; long code lists are split over several
searches) and, for Observations, the configured categories; all
MedicationAdministrations and Procedures.  Each Bundle page becomes one
``Page``, the unit the sync commits.

Incremental passes ask for ``_lastUpdated=gt<since>``.  A page's watermark is
the server's own time when the pass's first search ran (the Bundle's
``meta.lastUpdated``, else the ``Date`` header), never our clock: anything
committed at the server while the pass was running is at or after that time,
so the next pass, which asks from the watermark minus the sync's overlap,
sees it.  The overlap also covers transactions that commit a little after
the time they stamp.  An incremental pass's first page also carries deletions (``history``).

A page's cursor (``search_terms.PassCursor``: the query plan's fingerprint,
the query index, the next link and the pass's start time) lets an
interrupted pass resume at the first uncommitted page with the original
watermark.  A cursor from another
plan (roster, catalog or batch size changed) is ignored and the resource
type is read from the start, which only costs time.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence

import prometheus_client

from adapter import errors
from adapter import roster as roster_mod
from adapter.fhir import batching, bundles, connect, history, http, medications, prefetch, verify
from adapter.fhir import settings as fhir_settings
from adapter.fhir.batching import Query
from adapter.fhir.search_terms import (
    PassCursor,
    code_tokens,
    escape_token,
    identifier_token,
    plan_fingerprint,
    search_since,
)
from adapter.fhir.source import BadLine, Page, SourceLine
from adapter.fhir.wanted import Wanted

log = logging.getLogger(__name__)

UNASKED_PATIENTS = prometheus_client.Counter(
    "trial_adapter_unasked_patients_dropped",
    "Patients a site's Patient search returned without any searched identifier (dropped), by site.",
    ["site"],
)


class RestSearchSource:
    """A site's FHIR search API as a ``Source`` (see ``adapter.fhir.source``)."""

    def __init__(
        self,
        site: str,
        settings: fhir_settings.RestSource,
        *,
        roster: roster_mod.Roster,
        wanted: Wanted,
        client: http.FhirClient | None = None,
        prefetch: bool = True,
    ) -> None:
        self.site = site
        self.prefetch = prefetch  # fetch the next page while the sync stores this one
        self.settings = settings
        # The caller's, already loaded and checked (``SiteSetup``): the source
        # searches for exactly the patients and codes the pass maps.
        self.roster = roster
        self.wanted = wanted
        self._client = client
        self._complete_pass = False
        self._medications: medications.MedicationResolver | None = None
        self._narrowest: int | None = None  # batch size after a server refused a URL as too long
        self._deletions = history.Deletions(site, settings)  # the type's deletions on a first page

    @property
    def client(self) -> http.FhirClient:
        """Connected on first use: building a source must stay cheap and offline."""
        if self._client is None:
            self._client = connect.client_for(self.site, self.settings)
        return self._client

    @property
    def medications(self) -> medications.MedicationResolver:
        """Resolves administrations' Medication references, each Medication fetched once per source."""
        if self._medications is None:
            lookup = bundles.medication_lookup(
                self.client, strict=self.settings.strict_search, max_url_bytes=self.settings.max_url_bytes
            )
            self._medications = medications.MedicationResolver(lookup)
        return self._medications

    # Source ---------------------------------------------------------------

    @property
    def complete_listing(self) -> bool:
        """True only after a pass that read every type from scratch (no ``since``, no resume).

        Then a stored resource the pass did not see was deleted at the site (or
        left the roster or the catalog), and the sync retires what it fed.
        """
        return self._complete_pass

    def patients(self) -> Iterator[SourceLine | BadLine]:
        """Roster patients, found by identifier search in batches; each Patient once."""
        self._complete_pass = True  # a pass begins; pages() clears it if the pass is partial
        self._deletions.new_pass()
        if not self.settings.incremental:
            log.warning(
                "incremental passes are off for this source (incremental = false): every pass reads "
                "everything; a fhir-bulk source with _since costs the EHR less if the server offers it",
                extra={"site": self.site},
            )
        seen: set[str] = set()
        unasked = 0
        pages_read: set[str] = set()  # one set for all batches: see bundles.walk
        values = {identifier_token(e): e.identifier_value for e in self.roster.entries}
        queries = self.identifier_queries()
        index = 0
        while index < len(queries):
            query = queries[index]
            params = dict(query.params)
            asked = verify.Expected.of_search("Patient", params)
            read_any = False
            try:
                for page in bundles.walk(
                    self.client,
                    "Patient",
                    resource_type="Patient",
                    params=params,
                    sensitive=[values[token] for token in query.batch],
                    strict=self.settings.strict_search,
                    visited=pages_read,
                    next_links=self.settings.next_links,
                ):
                    read_any = True
                    for line in page.lines:
                        if isinstance(line, SourceLine):
                            if not verify.asked_patient(asked, line.resource):
                                unasked += 1
                                continue
                            if line.resource["id"] in seen:
                                continue
                            seen.add(line.resource["id"])
                        yield line
            except errors.NetworkError as refused:
                queries = self._narrowed(queries, index, refused, read_any)
                continue
            index += 1
        if unasked:
            log.warning(
                "the server's Patient search returned patients that were not asked for (none of the "
                "searched identifiers is on them); they were dropped, nothing of theirs is read",
                extra={"site": self.site, "count": unasked},
            )
            UNASKED_PATIENTS.labels(site=self.site).inc(unasked)

    def pages(
        self,
        resource_type: str,
        *,
        patient_refs: Sequence[str],
        since: dt.datetime | None,
        resume: str | None,
    ) -> Iterator[Page]:
        """Pages of one resource type for these patients, resuming after ``resume`` if it fits.

        With ``incremental = false`` (a server that ignores ``_lastUpdated``)
        ``since`` is not asked: every pass reads everything, and is complete.
        """
        if not self.settings.incremental:
            since = None
        if since is not None or resume is not None:
            self._complete_pass = False
        pages = self._pages(resource_type, patient_refs, since, resume)
        return prefetch.ahead(pages, f"fhir-prefetch-{self.site}") if self.prefetch else pages

    def _pages(
        self,
        resource_type: str,
        patient_refs: Sequence[str],
        since: dt.datetime | None,
        resume: str | None,
    ) -> Iterator[Page]:
        patient_ids = [ref.split("/", 1)[1] for ref in patient_refs if ref.startswith("Patient/")]
        queries = self.plan(resource_type, patient_ids, since)
        fingerprint = plan_fingerprint(queries)
        cursor = PassCursor.load(resume) if resume else None
        if resume and (cursor is None or cursor.plan != fingerprint or cursor.query > len(queries)):
            log.info(
                "saved resume point does not fit the current searches; reading this type from the start",
                extra={"site": self.site, "resource_type": resource_type},
            )
            cursor = None
        started = cursor.started if cursor else None
        watermark = bundles.parse_instant(started) if started else None
        first_page = cursor is None
        deleted: list[str] = []  # read after the first page's search (never older), handed on with it
        pages_read: set[str] = set()  # one set for all searches of the pass: see bundles.walk
        if cursor is not None and cursor.query >= len(queries):
            # Every page was committed, the end of the pass was not: hand back the watermark.
            yield Page(lines=[], cursor=resume, watermark=watermark)
            return
        index = cursor.query if cursor else 0
        while index < len(queries):
            query = queries[index]
            saved_next = cursor.next_url if cursor is not None and index == cursor.query else None
            walk = bundles.walk(
                self.client,
                saved_next or query.resource_type,
                resource_type=resource_type,
                params=None if saved_next else dict(query.params),
                sensitive=patient_ids,
                strict=self.settings.strict_search,
                visited=pages_read,
                search=dict(query.params),
                next_links=self.settings.next_links,
            )
            read_any = saved_next is not None  # a saved next link is the server's own URL: never split
            try:
                for page in walk:
                    read_any = True
                    if first_page:
                        first_page = False
                        watermark = self._watermark(page, resource_type)
                        started = watermark.isoformat() if watermark else None
                        deleted = self._deletions.deleted_since(self.client, resource_type, since)
                    position = PassCursor(
                        fingerprint, index if page.next_url else index + 1, page.next_url, started
                    )
                    if resource_type == "MedicationAdministration":
                        self.medications.inline(
                            [line.resource for line in page.lines if isinstance(line, SourceLine)]
                        )
                    yield Page(page.lines, position.dump(), watermark, deleted)
                    deleted = []
            except errors.NetworkError as refused:
                # The refused search returned nothing: ask for its patients again in smaller
                # batches.  Later cursors belong to the narrowed plan; a resume in another
                # process plans afresh, finds them foreign and reads this type from the start.
                queries = self._narrowed(queries, index, refused, read_any)
                fingerprint = plan_fingerprint(queries)
                continue
            index += 1

    def _watermark(self, first: bundles.SearchPage, resource_type: str) -> dt.datetime | None:
        if first.server_time is None:
            log.warning(
                "the server gives no time with its search results (no Bundle.meta.lastUpdated, "
                "no Date header), so this pass cannot set a watermark",
                extra={"site": self.site, "resource_type": resource_type},
            )
        return first.server_time

    def expected_total(self) -> int | None:
        return None  # counting would cost a search per batch; the progress bar runs without a total

    # plan -------------------------------------------------------------------

    def identifier_queries(self) -> list[Query]:
        """The Patient searches by roster identifier, in a stable order."""
        entries = sorted(self.roster.entries, key=lambda e: (e.identifier_system, e.identifier_value))
        count = [("_count", str(max(self.settings.page_size, self.settings.patient_batch_size)))]
        tokens = [identifier_token(e) for e in entries]
        return [
            Query.of("Patient", "identifier", batch, count)
            for batch in self._batches("Patient", "identifier", tokens, count)
        ]

    @property
    def requests_made(self) -> int:
        """HTTP requests sent to the site's server so far (every try, token requests included)."""
        return self._client.requests_sent if self._client is not None else 0

    def _batches(
        self, resource_type: str, batch_param: str, values: Sequence[str], other: Sequence[tuple[str, str]]
    ) -> list[tuple[str, ...]]:
        """``values`` in batches that fit the URL budget and the batch size (narrowed if a server refused)."""
        most = self.settings.patient_batch_size
        if self._narrowest is not None:
            most = min(most, self._narrowest)
        return batching.pack(
            self.settings.base_url,
            resource_type,
            batch_param,
            values,
            other,
            max_url_bytes=self.settings.max_url_bytes,
            most=most,
        )

    def _narrowed(
        self, queries: list[Query], index: int, refused: errors.NetworkError, read_any: bool
    ) -> list[Query]:
        """The plan with search ``index`` and all after it in half-size batches; else re-raises ``refused``.

        Only a first page refused for its URL's length is asked again: a
        refused next link is the server's own URL, and re-asking would read
        the pages before it twice.  The smaller size holds for the rest of
        the pass (every type), so each long search is refused once at most.
        """
        size = len(queries[index].batch) // 2
        if read_any or size < 1 or not batching.url_too_long(refused):
            raise refused
        self._narrowest = size
        log.warning(
            "the server refused a search URL as too long; asking for fewer patients per search "
            "for the rest of this pass (lower max_url_bytes to avoid the refusals)",
            extra={"site": self.site, "resource_type": queries[index].resource_type, "batch": size},
        )
        return batching.narrowed(queries, index, size)

    def plan(self, resource_type: str, patient_ids: Sequence[str], since: dt.datetime | None) -> list[Query]:
        """The searches one pass runs for a resource type, in a stable order."""
        settings = self.settings
        extra: list[tuple[str, str]] = []
        if resource_type == "Observation" and settings.observation_category:
            extra.append(("category", ",".join(settings.observation_category)))
        if since is not None:
            extra.append(("_lastUpdated", search_since(since)))
        extra.append(("_count", str(settings.page_size)))
        code_chunks: list[tuple[str, ...]] = [()]
        wanted_codes = self.wanted.codes_for(resource_type)
        if wanted_codes is not None:
            codes = code_tokens(wanted_codes)
            if not codes:
                return []  # nothing wanted: asking without a code filter would fetch everything
            code_chunks = batching.pack_codes(
                settings.base_url,
                resource_type,
                codes,
                extra,
                max_url_bytes=settings.max_url_bytes,
                most=settings.codes_per_query,
            )
        ids = [escape_token(i) for i in sorted(patient_ids)]
        queries = []
        for codes_chunk in code_chunks:
            other = [("code", ",".join(codes_chunk)), *extra] if codes_chunk else extra
            for batch in self._batches(resource_type, "patient", ids, other):
                queries.append(Query.of(resource_type, "patient", batch, other))
        return queries
