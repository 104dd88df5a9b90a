"""The paging probes: ``_lastUpdated``, ``_count`` and next links, on the data search the roster probes found.

They decide whether incremental passes can ask only for what changed
(``incremental``), how large a page the server really sends (``page_size``)
and whether its next links keep the search (``next_links``).
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any

from adapter.fhir import bundles, search_terms, verify
from adapter.fhir.check_row import CheckRow
from adapter.fhir.probe.base import (
    AFTER_NOW,
    ITEM_COUNT,
    ITEM_FIT,
    ITEM_LAST_UPDATED,
    ITEM_NEXT_LINKS,
    LARGE_COUNT,
    Prober,
    words,
)


def last_updated(prober: Prober) -> CheckRow:
    data = prober.data
    if data is None:
        return CheckRow(ITEM_LAST_UPDATED, True, "not tested: no roster patient data to search", True)
    # Later than anything the server can hold, whichever clock is ahead.
    now = max(filter(None, (prober.server_time, dt.datetime.now(dt.UTC))))
    search = data.search
    since = search_terms.search_since(now + AFTER_NOW)
    params = search.params([data.richest], 10, _lastUpdated=since)
    answer = prober.search(search.resource_type, params)
    article = "an" if search.resource_type[0] in "AEIOU" else "a"
    asked = f"{article} {search.resource_type} search with _lastUpdated=gt<now plus one hour>"
    incremental = prober.server.incremental
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
            "incremental passes would read everything again and stop at the first resource older than asked"
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


def count(prober: Prober) -> CheckRow:
    data = prober.data
    if data is None:
        return CheckRow(ITEM_COUNT, True, "not tested: no roster patient data to search", True)
    search = data.search
    patients = sorted(data.singles) if data.or_list_ok else [data.richest]
    size = prober.server.page_size
    params = search.params(patients, size)
    answer = prober.search(search.resource_type, params)
    prober.count_misfits(search.resource_type, params, answer)
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
    large = prober.search(search.resource_type, search.params(patients, LARGE_COUNT))
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


def next_links(prober: Prober) -> CheckRow:
    data = prober.data
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
    first = prober.search(search.resource_type, params)
    if first.refused is not None:
        return CheckRow(
            ITEM_NEXT_LINKS,
            True,
            f"could not run: a search with _count = {count} was refused ({first.refused})",
            True,
        )
    prober.count_misfits(search.resource_type, params, first)
    if prober.misfits:
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
    if not prober.client.same_server(first.next_url):
        return CheckRow(
            ITEM_NEXT_LINKS,
            False,
            "the next link points to another server than base_url; the adapter does not follow it "
            "(it would send its credentials there), so a sync stops at every second page; check "
            "base_url against the server's own base URL (a proxy in between?)",
        )
    lost = verify.lost_params(search.resource_type, params, first.next_url)
    second = prober.search(first.next_url)
    if second.refused is not None:
        return CheckRow(
            ITEM_NEXT_LINKS,
            False,
            f"following a next link was refused ({second.refused}); a sync would stop at every "
            "second page; ask the site",
        )
    unfit = prober.count_misfits(search.resource_type, params, second, plain=False)
    opaque = _path_type(first.next_url) != search.resource_type
    if not lost and not unfit:
        kind = (
            "are opaque continuations (the server keeps the search)"
            if opaque
            else "keep the search parameters"
        )
        return CheckRow(ITEM_NEXT_LINKS, True, f"next links {kind}; the second page fits the search")
    unfit_words = words(unfit)
    if not lost:
        kept = "is an opaque continuation (the server keeps the search)" if opaque else "kept its parameters"
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
    fixed = prober.search(verify.repaired(first.next_url, params, lost))
    repair_works = fixed.refused is None and not prober.count_misfits(
        search.resource_type, params, fixed, plain=False
    )
    if prober.server.next_links == "repair":
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


def _updated_after(resource: dict[str, Any], moment: dt.datetime) -> bool:
    meta = resource.get("meta")
    stamp = meta.get("lastUpdated") if isinstance(meta, dict) else None
    updated = bundles.parse_instant(stamp) if isinstance(stamp, str) else None
    return updated is not None and updated > moment


def _path_type(url: str) -> str:
    return urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
