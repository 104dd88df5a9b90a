"""Search result pages: checking each Bundle and following ``link[next]`` to the end.

A search answers with ``searchset`` Bundles chained by their ``next`` links
(https://hl7.org/fhir/R4/http.html#paging).  The chain is walked with a loop,
not recursion, and a next link to a page already read ends the walk with an
error: a server whose page links to itself must not keep a scheduled pass
busy forever (the trap of paging by recursion, as in smart-fetch's
``crawl_bundle_chain``).  The check runs before the page is handed on, so its
cursor (which holds that next link) is never committed, and the pages read
can be shared by all searches of a pass: a next link into another search
(seen from a server mixing up its paging caches) would otherwise be followed
to that search's end and the rest of this one silently skipped.

A page that is not what a search returns (not JSON, not a Bundle, a Bundle of
the wrong type, entries in the wrong shape, a next link to another server or
to nowhere) raises ``SourceError`` before anything from it is yielded, so the
sync commits nothing from it and resumes at that page next time.  Single bad
entries inside a good page become ``BadLine`` issues, like bad NDJSON lines,
and so does a resource larger than ``max_resource_bytes`` (its JSON, compact):
it is not handed on, and its ``BadLine`` names it, so the sync raises
``invalid_resource`` on the resource itself.  A whole answer over
``max_response_bytes`` is refused by ``http.FhirClient`` before it is parsed.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import email.utils
import logging
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from adapter import errors
from adapter.fhir import batching, http, ndjson, verify
from adapter.fhir.medications import FetchMedications
from adapter.fhir.source import BadLine, SourceLine
from adapter.net import messages

log = logging.getLogger(__name__)

# Prefer handling=strict: a server that does not know a parameter must refuse
# the search rather than ignore it (https://hl7.org/fhir/R4/search.html#errors);
# an ignored ``patient`` would return every patient's data.  Cache-Control:
# no-cache asks servers that cache searches (HAPI reuses results for a minute)
# for current results, which the watermark relies on.
SEARCH_HEADERS = {"Prefer": "handling=strict", "Cache-Control": "no-cache"}
LENIENT_HEADERS = {"Cache-Control": "no-cache"}


@dataclass(frozen=True)
class SearchPage:
    """One checked page of search results."""

    url: str
    lines: list[SourceLine | BadLine]
    next_url: str | None
    server_time: dt.datetime | None  # when the server ran the search (meta.lastUpdated, else Date)
    total: int | None


def walk(
    client: http.FhirClient,
    url: str,
    *,
    resource_type: str,
    params: Mapping[str, str] | None = None,
    sensitive: Iterable[str] = (),
    strict: bool = True,
    visited: set[str] | None = None,
    search: Mapping[str, str] | None = None,
    next_links: str = "repair",
) -> Iterator[SearchPage]:
    """Every page of one search, first to last; ``url`` may also be a saved next link.

    ``visited`` collects the pages read; pass the same set to every search of
    a pass, so a next link back into any of them is caught.  ``search`` is the
    search's own parameters (also when ``url`` is a saved next link): every
    result is checked against them (``adapter.fhir.verify``), and a next link
    that dropped them is repaired or, with ``next_links="refuse"``, refused.
    """
    sensitive = tuple(sensitive)
    visited = set() if visited is None else visited
    if search is None:
        search = params or {}
    expected = verify.Expected.of_search(resource_type, search)
    page = read_page(
        client,
        url,
        resource_type=resource_type,
        params=params,
        sensitive=sensitive,
        first=True,
        strict=strict,
        expected=expected,
    )
    while True:
        page = _checked_next(client, page, resource_type, search, next_links)
        visited.add(normal_url(page.url))
        if page.next_url is not None and normal_url(page.next_url) in visited:
            raise errors.SourceError(
                f"site {client.site}: {messages.redact_url(page.url)}: the search's next link "
                f"{messages.redact_url(page.next_url)} points back to a page already read (a paging loop at "
                "the server); nothing from this page was stored, and the next pass resumes here"
            )
        yield page
        if page.next_url is None:
            return
        page = read_page(
            client,
            page.next_url,
            resource_type=resource_type,
            sensitive=sensitive,
            first=False,
            strict=strict,
            expected=expected,
        )


def _checked_next(
    client: http.FhirClient, page: SearchPage, resource_type: str, search: Mapping[str, str], next_links: str
) -> SearchPage:
    """The page with its next link repaired if the link lost the search's parameters (or a fault)."""
    if page.next_url is None:
        return page
    lost = verify.lost_params(resource_type, search, page.next_url)
    if not lost:
        return page
    said = ", ".join(lost)
    if next_links == "refuse":
        raise errors.ServerFault(
            f"site {client.site}: {messages.redact_url(page.url)}: the server's next links drop the search "
            f"parameters ({said}), so the next page would hold other patients' data; nothing from this "
            'page was stored (set next_links = "repair" to put the parameters back)',
            fault="next_link_drops_params",
            resource_type=resource_type,
            setting="next_links",
        )
    log.warning(
        "the server's next links drop the search parameters; they are put back (next_links = repair)",
        extra={"site": client.site, "resource_type": resource_type, "lost": said},
    )
    return dataclasses.replace(page, next_url=verify.repaired(page.next_url, search, lost))


def medication_lookup(
    client: http.FhirClient,
    *,
    strict: bool,
    max_url_bytes: int = batching.DEFAULT_MAX_URL_BYTES,
    batch_size: int = 50,
) -> FetchMedications:
    """Look Medications up by ``Medication?_id=a,b,c`` at the site's server (``medications.py``).

    The ids go in as many as fit ``max_url_bytes`` (the site's URL budget,
    as for the patient batches: ``batching.pack``), at most ``batch_size``:
    a server's ids can be long, and a gateway that refuses long URLs
    refuses a lookup as readily as a search.  A lookup refused as too long
    anyway (414, or a 400/404 that says so) is asked again in two halves;
    a Medication read twice that way is only added twice.

    A server that refuses (no Medication read scope, 403; no such search,
    400) leaves the references unresolved, so the administrations become
    issues naming them, and says why once per pass in the log; a server that is down
    fails the pass like any other page, which the next pass retries.
    """

    def fetch(ids: Sequence[str]) -> Iterator[dict[str, Any]]:
        count = [("_count", str(batch_size))]  # as long as any chunk's own count
        waiting = collections.deque(
            batching.pack(
                client.base_url, "Medication", "_id", ids, count, max_url_bytes=max_url_bytes, most=batch_size
            )
        )
        while waiting:
            chunk = waiting.popleft()
            params = {"_id": ",".join(chunk), "_count": str(len(chunk))}
            try:
                pages = walk(client, "Medication", resource_type="Medication", params=params, strict=strict)
                for page in pages:
                    yield from (line.resource for line in page.lines if isinstance(line, SourceLine))
            except errors.FatalNetworkError as exc:
                if len(chunk) > 1 and batching.url_too_long(exc):
                    half = len(chunk) // 2
                    waiting.extendleft((chunk[half:], chunk[:half]))  # first half first
                    log.warning(
                        "the server refused a Medication lookup URL as too long; asking for %d at a time "
                        "(lower max_url_bytes to avoid the refusals)",
                        half,
                        extra={"site": client.site},
                    )
                    continue
                log.warning(
                    "the site's Medication resources cannot be read, so administrations that name their "
                    "drug by reference stay unmapped (each becomes an issue; once the adapter may read "
                    "Medication, `trial-adapter sync --full` maps them): %s",
                    exc,
                    extra={"site": client.site},
                )
                return

    return fetch


def read_page(
    client: http.FhirClient,
    url: str,
    *,
    resource_type: str,
    params: Mapping[str, str] | None = None,
    sensitive: Iterable[str] = (),
    first: bool = True,
    strict: bool = True,
    expected: verify.Expected | None = None,
) -> SearchPage:
    """Fetch one page and check it is a usable ``searchset`` Bundle.

    With ``expected``, every resource on it must fit the search (``verify.check``).
    """
    sensitive = tuple(sensitive)
    if not client.same_server(client.url(url)):
        raise _broken(client, url, "a saved next link points to another server than base_url")
    headers = SEARCH_HEADERS if strict else LENIENT_HEADERS
    body, response = client.get_json(url, params=params, headers=headers, sensitive=sensitive)
    where = f"site {client.site}: {messages.redact_url(response.url)}"
    kind = body.get("resourceType")
    if kind == "OperationOutcome":
        said = messages.scrub(messages.outcome_text(body) or "", sensitive)
        raise errors.SourceError(f"{where}: the server answered with an OperationOutcome: {said}")
    if kind != "Bundle":
        raise errors.SourceError(f"{where}: expected a Bundle of search results, got {str(kind)[:40]!r}")
    if body.get("type") not in (None, "searchset"):
        raise errors.SourceError(f"{where}: expected a searchset Bundle, got type {str(body['type'])[:40]!r}")
    entries = body.get("entry", [])
    if not isinstance(entries, list):
        raise errors.SourceError(f"{where}: Bundle.entry is not a list")
    total = body.get("total") if isinstance(body.get("total"), int) else None
    next_url = _next_link(client, response.url, body)
    if not entries and next_url is not None:
        raise errors.SourceError(
            f"{where}: a page without entries links to a next page; the server's paging is broken "
            "(nothing from this search was lost: the pass resumes here next time)"
        )
    if not entries and first and total:
        raise errors.SourceError(f"{where}: the Bundle says total {total} but carries no entries")
    # Only an answer larger than the limit can hold a resource larger than it: measure only then.
    limit = client.max_resource_bytes if len(response.content) > client.max_resource_bytes else None
    if expected is not None:
        for entry in entries:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and _is_result(entry, resource):
                verify.check(expected, resource, where)
    lines = list(_lines(entries, resource_type, client.site, sensitive, limit))
    return SearchPage(response.url, lines, next_url, _server_time(body, response.headers), total)


def _lines(
    entries: list[Any], resource_type: str, site: str, sensitive: tuple[str, ...], limit: int | None = None
) -> Iterator[SourceLine | BadLine]:
    for number, entry in enumerate(entries, start=1):
        location = f"{resource_type} search entry {number}"
        if not isinstance(entry, dict):
            yield BadLine(resource_type, location, "Bundle entry is not an object")
            continue
        search = entry.get("search")
        mode = search.get("mode") if isinstance(search, dict) else None
        resource = entry.get("resource")
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        if mode == "outcome" or kind == "OperationOutcome":
            said = messages.scrub(messages.outcome_text(resource) or "", sensitive)
            log.warning("server message in search results", extra={"site": site, "said": said})
            continue
        if mode == "include":
            continue  # _include'd resources: we never ask for them
        if not isinstance(resource, dict):
            yield BadLine(resource_type, location, "Bundle entry has no resource")
        elif resource.get("resourceType") != resource_type:
            got = str(resource.get("resourceType"))[:40]
            yield BadLine(resource_type, location, f"resourceType is {got!r}, not {resource_type}")
        elif not isinstance(resource.get("id"), str) or not resource["id"]:
            yield BadLine(resource_type, location, "resource has no id")
        elif limit is not None and (size := len(orjson.dumps(resource))) > limit:
            ref = f"{resource_type}/{resource['id']}"
            problem = ndjson.too_large_problem(size, limit)
            yield BadLine(resource_type, ref, problem, ref=ref, patient_ref=_patient(resource))
        else:
            yield SourceLine(resource_type, resource, f"{resource_type}/{resource['id']}")


def _is_result(entry: dict[str, Any], resource: dict[str, Any]) -> bool:
    """A search match (not an ``_include``d resource, not a server message)."""
    search = entry.get("search")
    mode = search.get("mode") if isinstance(search, dict) else None
    return mode not in ("include", "outcome") and resource.get("resourceType") != "OperationOutcome"


def _patient(resource: dict[str, Any]) -> str | None:
    """``Patient/<id>`` of a resource's subject, so an issue about it reaches the right trial subject."""
    subject = resource.get("subject") or resource.get("patient")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(reference, str):
        return None
    return "/".join(reference.split("/_history/")[0].rstrip("/").split("/")[-2:])[:200]


class BrokenPaging(Exception):
    """A Bundle's next link that cannot be followed; the message says why (no URL in it)."""


def next_link(client: http.FhirClient, page_url: str, body: dict[str, Any]) -> str | None:
    """The Bundle's next link made absolute; None on the last page.

    Raises ``BrokenPaging`` for a link that is malformed or leads to another
    server: following it would send our credentials to another host.  Used
    by searches (``_next_link``) and by type histories (``adapter.fhir.history``).
    """
    links = body.get("link", [])
    if not isinstance(links, list):
        raise BrokenPaging("Bundle.link is not a list")
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next":
            target = link.get("url")
            if not isinstance(target, str) or not target.strip():
                raise BrokenPaging("the next link has no url")
            absolute = urllib.parse.urljoin(page_url, target.strip())
            if urllib.parse.urlsplit(absolute).scheme not in ("http", "https"):
                raise BrokenPaging("the next link is not an http(s) URL")
            if not client.same_server(absolute):
                raise BrokenPaging("the next link points to another server than base_url")
            return absolute
    return None


def _next_link(client: http.FhirClient, page_url: str, body: dict[str, Any]) -> str | None:
    try:
        return next_link(client, page_url, body)
    except BrokenPaging as problem:
        raise _broken(client, page_url, str(problem)) from None


def _broken(client: http.FhirClient, url: str, problem: str) -> errors.SourceError:
    return errors.SourceError(
        f"site {client.site}: {messages.redact_url(url)}: broken paging: {problem}; "
        "the pass stops here and resumes from the last committed page"
    )


def _server_time(body: dict[str, Any], headers: Mapping[str, str]) -> dt.datetime | None:
    meta = body.get("meta")
    stamp = meta.get("lastUpdated") if isinstance(meta, dict) else None
    moment = parse_instant(stamp) if isinstance(stamp, str) else None
    if moment is None and headers.get("Date"):
        try:
            moment = email.utils.parsedate_to_datetime(headers["Date"])
        except (TypeError, ValueError):
            moment = None
    return moment if moment is not None and moment.tzinfo is not None else None


def parse_instant(text: str) -> dt.datetime | None:
    """A FHIR ``instant`` (always with a zone: https://hl7.org/fhir/R4/datatypes.html#instant)."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def normal_url(url: str) -> str:
    """A URL's identity for loop detection: parameter order and encoding do not matter."""
    parts = urllib.parse.urlsplit(url)
    query = sorted(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query), fragment=""))
