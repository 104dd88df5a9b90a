"""Behaviour probes for ``trial-adapter check``: does the server answer the searches the REST source asks?

The CapabilityStatement says what a server means to do; these probes see
what it does.  They run a handful of small, read-only searches for the
first few roster patients found by identifier and compare the answers with
each other, never trusting one answer to be the answer to the question
asked (a server may "return additional results it finds relevant",
https://hl7.org/fhir/R4/search.html#summary, ignore a parameter, or lose
the search in its next links):

1. an OR-list of identifiers (``Patient?identifier=a,b``) finds exactly the
   patients the single-identifier searches find;
2. an OR-list of patients (``Observation?patient=a,b&code=…``, else
   MedicationAdministration or Procedure) answers exactly the union of the
   single-patient searches;
3. ``_lastUpdated`` is honoured: a search for what changed an hour after the
   server's own time is empty;
4. ``_count = page_size`` is honoured (and how far up to 1000 it goes);
5. next links keep the search: the second page of a ``_count=1`` or ``2``
   search still fits the search (patient and code asked for), and a link
   that reads as a plain search URL still holds its filter parameters (an
   opaque continuation such as HAPI's ``_getpages`` is fine when its page
   fits);
6. whether Observation searches by patient and code need a ``category``;
7. whether ``Prefer: handling=strict`` makes the server refuse an unknown
   parameter;

and every answer to a plain search (one identifier, one patient) is checked
against its search with ``adapter.fhir.verify``, the same check the sync
runs on every page.

Each probe is one ``CheckRow``: what was found, what it means for a sync
and the setting that adapts to it.  A quirk the current settings already
adapt to is ok, with the finding.  A quirk they do not cover is red when a
sync would read data it must not keep, lose data, or stop with an error on
every pass; otherwise it is a warning.  A probe that cannot run (a network
error, the time limit) is a warning row, never a crash.  No patient id,
identifier value or name appears in a row: only counts, resource types,
parameter names and settings.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import email.utils
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapter import errors
from adapter import roster as roster_mod
from adapter.fhir import bundles, http, rest, verify
from adapter.fhir import settings as fhir_settings
from adapter.fhir.capability import CheckRow
from adapter.mapping import catalog as catalog_mod

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


class _OutOfTime(errors.SourceError):
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
        patients = ",".join(rest.escape_token(p) for p in patient_ids)
        return {"patient": patients, **dict(self.filters), **extra, "_count": str(count)}

    @property
    def described(self) -> str:
        names = "&".join(f"{name}=…" for name, _ in self.filters)
        return f"{self.resource_type}?patient=…" + (f"&{names}" if names else "")


@dataclass
class _Data:
    """The data search the comparison probes use, and what one search per patient found."""

    search: DataSearch
    singles: dict[str, Collected]  # patient id -> its one-patient search
    or_list_ok: bool = False

    @property
    def richest(self) -> str:
        return max(self.singles, key=lambda p: len(self.singles[p].ids))


def probe_server(
    site: str,
    server: fhir_settings.RestSource,
    client: http.FhirClient,
    *,
    roster: roster_mod.Roster,
    catalog: catalog_mod.Catalog,
    budget_seconds: float = BUDGET_SECONDS,
) -> list[CheckRow]:
    """The behaviour rows for one ``fhir-rest`` site; each request bounded, all within ``budget_seconds``."""
    prober = _Prober(site, server, client, roster, catalog, budget_seconds)
    with _bounded(client):
        return prober.run()


class _Prober:
    def __init__(
        self,
        site: str,
        server: fhir_settings.RestSource,
        client: http.FhirClient,
        roster: roster_mod.Roster,
        catalog: catalog_mod.Catalog,
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
        self.codes = rest.observation_code_tokens(catalog)[: server.codes_per_query]
        self.found: list[tuple[str, str]] = []  # (identifier token, patient id) per roster patient found
        self.unasked_patients = 0  # patients a one-identifier search returned without that identifier
        self.server_time: dt.datetime | None = None
        self.category_required: bool | None = None  # None: not known, or Observation not searchable
        self.data: _Data | None = None
        self.misfits: collections.Counter[str] = collections.Counter()  # in plain searches' answers
        self.checked = 0  # resources of plain searches checked against their search

    # ------------------------------------------------------------------ run

    def run(self) -> list[CheckRow]:
        rows: list[CheckRow] = []
        roster_row = self._guard(ITEM_ROSTER, self.find_patients)
        if roster_row is not None:
            rows.append(roster_row)
        if self.found:
            # Category first: the data probes must not mistake a missing category for a quirk.
            steps: list[tuple[str, Callable[[], CheckRow]]] = [
                (ITEM_CATEGORY, self.probe_category),
                (ITEM_IDENTIFIERS, self.probe_identifiers),
                (ITEM_PATIENTS, self.probe_patients),
                (ITEM_LAST_UPDATED, self.probe_last_updated),
                (ITEM_COUNT, self.probe_count),
                (ITEM_NEXT_LINKS, self.probe_next_links),
            ]
        else:
            steps = []
        for item, step in [*steps, (ITEM_STRICT, self.probe_strict)]:
            row = self._guard(item, step)
            if row is not None:
                rows.append(row)
        if self.found:
            rows.append(self.fit_row())
        order = [
            ITEM_ROSTER,
            ITEM_IDENTIFIERS,
            ITEM_PATIENTS,
            ITEM_LAST_UPDATED,
            ITEM_COUNT,
            ITEM_NEXT_LINKS,
            ITEM_CATEGORY,
            ITEM_STRICT,
            ITEM_FIT,
        ]
        rows.sort(key=lambda row: order.index(row.item))
        return [dataclasses.replace(row, detail=http.scrub(row.detail, self.sensitive)) for row in rows]

    def _guard(self, item: str, step: Callable[[], CheckRow | None]) -> CheckRow | None:
        """Run one probe; a failure to run it is a warning row, never a crash."""
        try:
            return step()
        except _OutOfTime:
            return CheckRow(
                item, True, f"not run: the probes' time limit ({self.budget:.0f} s) ran out", True
            )
        except errors.AdapterError as exc:
            return CheckRow(item, True, f"could not run: {exc}", True)

    # -------------------------------------------------------------- probes

    def find_patients(self) -> CheckRow | None:
        """The first roster patients, one identifier per search (the baseline of probe 1)."""
        for entry in self.entries:
            if len(self.found) >= PROBE_PATIENTS:
                break
            token = _token(entry)
            params = {"identifier": token, "_count": "10"}
            answer = self.search("Patient", params)
            if answer.refused is not None:
                return CheckRow(
                    ITEM_ROSTER,
                    False,
                    f"a Patient search by one identifier was refused ({answer.refused}); the REST source "
                    "finds roster patients this way, so a sync cannot start; check the identifier search "
                    "with the site",
                )
            fits = verify.Expected.of_search("Patient", params)
            ids = []
            for resource in answer.resources:
                if _fits(fits, resource):
                    ids.append(str(resource.get("id")))
                else:
                    self.unasked_patients += 1
            self.sensitive.update(ids)
            if ids:
                self.found.append((token, sorted(ids)[0]))
        tried = len(self.entries)
        if not self.found:
            return CheckRow(
                ITEM_ROSTER,
                True,
                f"none of the first {tried} roster identifiers was found on the server, so the behaviour "
                "probes that need patients did not run; check the roster's identifier_system against "
                "the server's Patient identifiers",
                True,
            )
        if len(self.found) < min(2, self.roster_size):
            return CheckRow(
                ITEM_ROSTER,
                True,
                f"only {len(self.found)} of the first {tried} roster identifiers found on the server; the "
                "OR-list probes need two patients",
                True,
            )
        return None

    def probe_identifiers(self) -> CheckRow:
        batch = self.server.patient_batch_size
        if len(self.found) < 2:
            return CheckRow(ITEM_IDENTIFIERS, True, "not tested: fewer than two roster patients found", True)
        params = {"identifier": ",".join(token for token, _ in self.found), "_count": "10"}
        answer = self.collect("Patient", params, PROBE_PAGES)
        asked = len(self.found)
        search = f"Patient?identifier with an OR-list of {asked} identifiers"
        if answer.refused is not None:
            return self._or_quirk(
                ITEM_IDENTIFIERS,
                f"{search} was refused ({answer.refused})",
                "the sync's Patient search would fail",
                "searches one identifier at a time",
            )
        fits = verify.Expected.of_search("Patient", params)
        got = {str(r.get("id")) for r in answer.resources if _fits(fits, r)}
        unasked = sum(1 for r in answer.resources if not _fits(fits, r)) + self.unasked_patients
        expected = {patient for _, patient in self.found}
        missing = expected - got
        extra_note = (
            f"; the server returns patients that were not asked for ({unasked} in the answers carried "
            "none of the searched identifiers; the adapter drops them)"
            if unasked
            else ""
        )
        if missing:
            return self._or_quirk(
                ITEM_IDENTIFIERS,
                f"the server answers only part of an OR-list: {search} found {asked - len(missing)} of "
                f"the {asked} patients one search per identifier finds{extra_note}",
                "roster patients would be missed and their data never read",
                "searches one identifier at a time",
            )
        found = f"{search} found the same {asked} patients as one search per identifier"
        note = "; patient_batch_size = 1 is not needed for this" if batch == 1 else ""
        return CheckRow(ITEM_IDENTIFIERS, True, found + extra_note + note, bool(unasked))

    def probe_patients(self) -> CheckRow:
        patient_ids = [patient for _, patient in self.found]
        data = self._find_data(patient_ids)
        if isinstance(data, CheckRow):
            return data
        self.data = data
        search = data.search
        ignoring = {
            kind
            for patient, single in data.singles.items()
            for kind in self._count_misfits(
                search.resource_type, search.params([patient], PROBE_COUNT), single
            )
        }
        if "unasked_patient" in ignoring:
            return CheckRow(
                ITEM_PATIENTS,
                False,
                f"a one-patient search ({search.described}) returned other patients' resources: the server "
                "ignores the patient parameter; the adapter stops such searches as a server fault and no "
                "setting adapts to it; ask the site, or use a fhir-bulk source with a Group",
            )
        if len(patient_ids) < 2:
            return CheckRow(ITEM_PATIENTS, True, "not tested: fewer than two roster patients found", True)
        # The patient with the most data last: a server answering for the first patient only shows.
        order = sorted(patient_ids, key=lambda p: (len(data.singles[p].ids), p))
        params = search.params(order, PROBE_COUNT * len(order))
        answer = self.collect(search.resource_type, params, PROBE_PAGES + 1)
        what = f"{search.resource_type}?patient with an OR-list of {len(order)} patients"
        if answer.refused is not None:
            return self._or_quirk(
                ITEM_PATIENTS,
                f"{what} was refused ({answer.refused})",
                "the sync's searches would fail",
                "searches one patient at a time",
            )
        foreign = self._count_misfits(search.resource_type, params, answer, plain=False)["unasked_patient"]
        if foreign:
            return self._or_quirk(
                ITEM_PATIENTS,
                f"{what} returned {foreign} resource(s) of patients that were not asked for",
                "the adapter stops such a search as a server fault, so no data would be read",
                "searches one patient at a time",
            )
        expected = set().union(*(single.ids for single in data.singles.values()))
        if answer.complete:
            missing, counted = len(expected - answer.ids), f"{len(expected)} resources"
        elif answer.total is not None and all(s.total is not None for s in data.singles.values()):
            wanted = sum(s.total or 0 for s in data.singles.values())
            missing, counted = max(0, wanted - answer.total), f"{wanted} resources (by Bundle.total)"
        else:
            return CheckRow(
                ITEM_PATIENTS,
                True,
                f"not decided: {what} has more results than a cheap probe reads, and no totals to compare",
                True,
            )
        if missing:
            return self._or_quirk(
                ITEM_PATIENTS,
                f"the server answers only part of an OR-list of patients: {what} lacks {missing} of the "
                f"{counted} one search per patient finds",
                "the sync would lose those patients' data",
                "searches one patient at a time",
            )
        data.or_list_ok = True
        found = f"{what} answered the same {counted} as one search per patient"
        note = (
            "; patient_batch_size = 1 is not needed (up to 200 patients per search save requests)"
            if self.server.patient_batch_size == 1
            else ""
        )
        return CheckRow(ITEM_PATIENTS, True, found + note)

    def probe_last_updated(self) -> CheckRow:
        data = self.data
        if data is None:
            return CheckRow(ITEM_LAST_UPDATED, True, "not tested: no roster patient data to search", True)
        # Later than anything the server can hold, whichever clock is ahead.
        now = max(filter(None, (self.server_time, dt.datetime.now(dt.UTC))))
        search = data.search
        since = rest.search_since(now + AFTER_NOW)
        params = search.params([data.richest], 10, _lastUpdated=since)
        answer = self.search(search.resource_type, params)
        article = "an" if search.resource_type[0] in "AEIOU" else "a"
        asked = f"{article} {search.resource_type} search with _lastUpdated=gt<now plus one hour>"
        incremental = self.server.incremental
        # A resource stamped after the asked moment is no sign (a clock ahead); one stamped before is.
        stale = [r for r in answer.resources if not _updated_after(r, now + AFTER_NOW)]
        if answer.refused is None and not stale:
            return CheckRow(
                ITEM_LAST_UPDATED,
                True,
                f"honoured: {asked} was empty; incremental passes ask only for what changed"
                + ("; incremental = false reads everything every pass anyway" if not incremental else ""),
            )
        if answer.refused is not None:
            found = f"{asked} was refused ({answer.refused})"
            consequence = "incremental passes would fail"
        else:
            found = f"the server ignores _lastUpdated: {asked} returned {len(stale)} older resource(s)"
            consequence = (
                "incremental passes would read everything again and stop at the first resource older "
                "than asked"
            )
        if not incremental:
            return CheckRow(
                ITEM_LAST_UPDATED, True, f"{found}; incremental = false already reads everything every pass"
            )
        return CheckRow(
            ITEM_LAST_UPDATED,
            False,
            f"{found}; {consequence}; set incremental = false (every pass then reads everything), or use "
            "a fhir-bulk source, whose _since works where _lastUpdated does not",
        )

    def probe_count(self) -> CheckRow:
        data = self.data
        if data is None:
            return CheckRow(ITEM_COUNT, True, "not tested: no roster patient data to search", True)
        search = data.search
        patients = sorted(data.singles) if data.or_list_ok else [data.richest]
        size = self.server.page_size
        params = search.params(patients, size)
        answer = self.search(search.resource_type, params)
        self._count_misfits(search.resource_type, params, answer)
        held = len(answer.resources)
        if answer.refused is not None:
            return CheckRow(
                ITEM_COUNT,
                False,
                f"a search with _count = {size} (page_size) was refused ({answer.refused}); the sync's "
                "searches would fail; set page_size lower (100 is widely accepted)",
            )
        if held < size and answer.next_url is not None:
            return CheckRow(
                ITEM_COUNT,
                True,
                f"the server caps _count at {held}: asked for {size} (page_size), a page held {held} and "
                f"a next link; paging still reads everything, in more pages; set page_size = {held}",
                True,
            )
        if held < size:
            if answer.total is not None and answer.total > held:
                return CheckRow(
                    ITEM_COUNT,
                    False,
                    f"asked for {size} (page_size), a page held {held} of {answer.total} results and no "
                    f"next link: the rest would never be read; set page_size = {held}",
                )
            return CheckRow(
                ITEM_COUNT,
                True,
                f"no cap seen: a page held all {held} results (fewer than page_size = {size})",
            )
        found = f"honours _count = {size} (page_size)"
        if size >= LARGE_COUNT or answer.next_url is None:
            return CheckRow(ITEM_COUNT, True, found)
        large = self.search(search.resource_type, search.params(patients, LARGE_COUNT))
        big = len(large.resources)
        if large.refused is not None:
            found += f"; _count = {LARGE_COUNT} was refused, so page_size stays at or below what works"
        elif big < LARGE_COUNT and large.next_url is not None:
            found += f"; asked for {LARGE_COUNT}, a page held {big}: the largest _count it honours is {big}"
        elif big < LARGE_COUNT:
            found += f"; asked for {LARGE_COUNT}, a page held all {big} results"
        else:
            found += f"; asked for {LARGE_COUNT}, a page held {big}"
        return CheckRow(ITEM_COUNT, True, found)

    def probe_next_links(self) -> CheckRow:
        data = self.data
        if data is None:
            return CheckRow(ITEM_NEXT_LINKS, True, "not tested: no roster patient data to search", True)
        search = data.search
        patient = data.richest
        known = len(data.singles[patient].ids)
        if known < 2:
            return CheckRow(
                ITEM_NEXT_LINKS,
                True,
                "not tested: no probed roster patient has two or more resources to page through",
                True,
            )
        count = 2 if known >= 3 else 1
        params = search.params([patient], count)
        first = self.search(search.resource_type, params)
        if first.refused is not None:
            return CheckRow(
                ITEM_NEXT_LINKS,
                True,
                f"could not run: a search with _count = {count} was refused ({first.refused})",
                True,
            )
        self._count_misfits(search.resource_type, params, first)
        if self.misfits:
            return CheckRow(
                ITEM_NEXT_LINKS,
                True,
                "not decided: even first pages hold resources their search did not ask for (see "
                f'"{ITEM_FIT}"), so a second page cannot show what paging does',
                True,
            )
        if first.next_url is None:
            if len(first.resources) >= known:
                return CheckRow(
                    ITEM_NEXT_LINKS,
                    True,
                    f"not tested: asked for _count = {count}, the server sent all {len(first.resources)} "
                    "results on one page",
                    True,
                )
            return CheckRow(
                ITEM_NEXT_LINKS,
                False,
                f"asked for _count = {count}, a page held {len(first.resources)} of at least {known} "
                "results and no next link: the rest would never be read; ask the site (no setting "
                "adapts to it)",
            )
        if not self.client.same_server(first.next_url):
            return CheckRow(
                ITEM_NEXT_LINKS,
                False,
                "the next link points to another server than base_url; the adapter does not follow it "
                "(it would send its credentials there), so a sync stops at every second page; check "
                "base_url against the server's own base URL (a proxy in between?)",
            )
        lost = verify.lost_params(search.resource_type, params, first.next_url)
        second = self.search(first.next_url)
        if second.refused is not None:
            return CheckRow(
                ITEM_NEXT_LINKS,
                False,
                f"following a next link was refused ({second.refused}); a sync would stop at every "
                "second page; ask the site",
            )
        unfit = self._count_misfits(search.resource_type, params, second, plain=False)
        opaque = _path_type(first.next_url) != search.resource_type
        if not lost and not unfit:
            kind = (
                "are opaque continuations (the server keeps the search)"
                if opaque
                else "keep the search parameters"
            )
            return CheckRow(ITEM_NEXT_LINKS, True, f"next links {kind}; the second page fits the search")
        unfit_words = _words(unfit)
        if not lost:
            kept = (
                "is an opaque continuation (the server keeps the search)" if opaque else "kept its parameters"
            )
            return CheckRow(
                ITEM_NEXT_LINKS,
                False,
                f"the second page holds {unfit_words}, though its next link {kept}; the adapter stops "
                "such a search as a server fault and no setting repairs it; a page_size above every "
                "patient's count avoids second pages; ask the site",
            )
        found = f"the server's next links drop the search parameters ({', '.join(lost)})" + (
            f": the second page holds {unfit_words}" if unfit else ""
        )
        fixed = self.search(verify.repaired(first.next_url, params, lost))
        repair_works = fixed.refused is None and not self._count_misfits(
            search.resource_type, params, fixed, plain=False
        )
        if self.server.next_links == "repair":
            if repair_works:
                return CheckRow(
                    ITEM_NEXT_LINKS,
                    True,
                    f'{found}; next_links = "repair" puts them back (checked: the page of a repaired '
                    "link fits the search)",
                )
            return CheckRow(
                ITEM_NEXT_LINKS,
                False,
                f"{found}; a next link with the parameters put back does not fit the search either, so "
                'next_links = "repair" cannot help and a sync stops at every second page; a page_size '
                "above every patient's count avoids second pages, or use a fhir-bulk source",
            )
        hint = " (a repaired link's page fits the search)" if repair_works else ""
        return CheckRow(
            ITEM_NEXT_LINKS,
            False,
            f'{found}; next_links = "refuse" stops every search that has a second page; set '
            f'next_links = "repair"{hint}',
        )

    def probe_category(self) -> CheckRow:
        configured = self.server.observation_category
        if not self.codes:
            return CheckRow(
                ITEM_CATEGORY,
                True,
                "not tested: the catalog maps no Observation codes, so the REST source runs no "
                "Observation search",
            )
        patient = self.found[0][1]
        base = {"patient": rest.escape_token(patient), "code": ",".join(self.codes)}
        without = self.search("Observation", {**base, "_count": "1"})
        self._count_misfits("Observation", base, without)
        if without.refused is None:
            self.category_required = False
            note = f"; observation_category = {list(configured)} narrows the searches" if configured else ""
            return CheckRow(
                ITEM_CATEGORY,
                True,
                f"not required: Observation?patient=…&code=… was answered without category{note}",
            )
        category = ",".join(configured) or "laboratory"
        with_category = self.search("Observation", {**base, "category": category, "_count": "1"})
        if with_category.refused is not None:
            return CheckRow(
                ITEM_CATEGORY,
                False,
                f"Observation?patient=…&code=… was refused without category ({without.refused}) and with "
                f"category={category} ({with_category.refused}); the sync's Observation searches would "
                "fail; check the search parameters the capability rows list, and codes_per_query (a "
                "shorter code list per search)",
            )
        self.category_required = True
        found = (
            f"required: Observation?patient=…&code=… was refused without category ({without.refused}) "
            f"and answered with category={category}"
        )
        if configured:
            return CheckRow(
                ITEM_CATEGORY, True, f"{found}; observation_category = {list(configured)} sends it"
            )
        return CheckRow(
            ITEM_CATEGORY,
            False,
            f"{found}; the sync's Observation searches would fail; set observation_category, e.g. "
            '["laboratory", "vital-signs"]',
        )

    def probe_strict(self) -> CheckRow:
        # `_id` of no real resource: nothing about a patient is asked, nothing comes back.
        params = {"_id": "trial-adapter-check", UNKNOWN_PARAM: "1", "_count": "1"}
        answer = self.search("Patient", params, headers=bundles.SEARCH_HEADERS)
        asked = f"a search with an unknown parameter ({UNKNOWN_PARAM}) and Prefer: handling=strict"
        if answer.refused is not None:
            if not self.server.strict_search:
                return CheckRow(
                    ITEM_STRICT,
                    True,
                    f"honoured: {asked} was refused; strict_search = false, so the adapter does not ask "
                    "for it: set strict_search = true",
                    True,
                )
            return CheckRow(ITEM_STRICT, True, f"honoured: {asked} was refused")
        return CheckRow(
            ITEM_STRICT,
            True,
            f"the server ignores parameters it does not support ({asked} was answered); the adapter "
            "checks every result against its query",
            True,
        )

    def fit_row(self) -> CheckRow:
        if not self.misfits:
            return CheckRow(
                ITEM_FIT,
                True,
                f"each of the {self.checked} resource(s) the probes' searches returned fits its search",
            )
        kinds = _words(self.misfits)
        if set(self.misfits) == {"unasked_category"} and self.server.observation_category:
            return CheckRow(
                ITEM_FIT,
                False,
                f"plain searches returned {kinds}: the server ignores the category parameter; the "
                "adapter stops such searches as a server fault; set observation_category = [] (the "
                "code filter is enough)",
            )
        return CheckRow(
            ITEM_FIT,
            False,
            f"plain searches (one identifier, one patient) returned {kinds}: the server ignores a "
            "search parameter; the adapter stops such searches as a server fault and no setting adapts "
            "to it; ask the site, or use a fhir-bulk source",
        )

    # ------------------------------------------------------------- helpers

    def _or_quirk(self, item: str, found: str, consequence: str, adapted: str) -> CheckRow:
        if self.server.patient_batch_size == 1:
            return CheckRow(item, True, f"{found}; patient_batch_size = 1 already {adapted}")
        return CheckRow(item, False, f"{found}; {consequence}; set patient_batch_size = 1")

    def _find_data(self, patient_ids: Sequence[str]) -> _Data | CheckRow:
        """The first of the sync's searches that finds data for a probed patient, one search per patient."""
        configured = self.server.observation_category
        candidates = []
        if self.codes and (self.category_required is False or (self.category_required and configured)):
            filters = [("code", ",".join(self.codes))]
            if configured:
                filters.append(("category", ",".join(configured)))
            candidates.append(DataSearch("Observation", tuple(filters)))
        candidates += [DataSearch("MedicationAdministration"), DataSearch("Procedure")]
        for search in candidates:
            singles = {}
            for patient in patient_ids:
                single = self.collect(
                    search.resource_type, search.params([patient], PROBE_COUNT), PROBE_PAGES
                )
                if single.refused is not None:
                    return CheckRow(
                        ITEM_PATIENTS,
                        False,
                        f"a one-patient search ({search.described}) was refused ({single.refused}); the "
                        "sync's searches would fail; ask the site which search parameters it takes",
                    )
                singles[patient] = single
            if any(single.resources for single in singles.values()):
                return _Data(search, singles)
        return CheckRow(
            ITEM_PATIENTS,
            True,
            f"not tested: the first {len(patient_ids)} roster patients found have none of the catalog's "
            "Observations, no MedicationAdministrations and no Procedures",
            True,
        )

    def _count_misfits(
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
            raise _OutOfTime("the probes' time limit ran out")
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
            said = http.scrub(http.outcome_text(body) or "an OperationOutcome", self.sensitive)
            return Answer(f"200 with an OperationOutcome: {said}", [], None, None)
        if kind != "Bundle":
            raise errors.SourceError(
                f"site {self.site}: {http.redact_url(response.url)}: expected a Bundle of search results, "
                f"got {str(kind)[:40]!r}"
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
        return http.scrub((said or text)[:300], self.sensitive)

    def _note_time(self, body: dict[str, Any], headers: Mapping[str, str]) -> None:
        meta = body.get("meta")
        stamp = meta.get("lastUpdated") if isinstance(meta, dict) else None
        moments = [bundles.parse_instant(stamp) if isinstance(stamp, str) else None, self.server_time]
        if headers.get("Date"):
            with contextlib.suppress(TypeError, ValueError):
                moments.append(_http_date(headers["Date"]))
        self.server_time = max(filter(None, moments), default=None)


@contextlib.contextmanager
def _bounded(client: http.FhirClient) -> Iterator[None]:
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


def _token(entry: roster_mod.RosterEntry) -> str:
    return f"{rest.escape_token(entry.identifier_system)}|{rest.escape_token(entry.identifier_value)}"


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def _fits(expected: verify.Expected, resource: dict[str, Any]) -> bool:
    if not verify.asked_patient(expected, resource):
        return False
    try:
        verify.check(expected, resource, "probe")
    except errors.ServerFault:
        return False
    return True


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


def _updated_after(resource: dict[str, Any], moment: dt.datetime) -> bool:
    meta = resource.get("meta")
    stamp = meta.get("lastUpdated") if isinstance(meta, dict) else None
    updated = bundles.parse_instant(stamp) if isinstance(stamp, str) else None
    return updated is not None and updated > moment


def _words(faults: Mapping[str, int]) -> str:
    return " and ".join(
        f"{count} resource(s) {FAULT_WORDS.get(kind, kind)}" for kind, count in sorted(faults.items())
    )


def _path_type(url: str) -> str:
    return urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


def _next_link(page_url: str, body: dict[str, Any]) -> str | None:
    links = body.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return urllib.parse.urljoin(page_url, link["url"].strip())
    return None


def _http_date(value: str) -> dt.datetime | None:
    moment = email.utils.parsedate_to_datetime(value)
    return moment if moment.tzinfo is not None else None
