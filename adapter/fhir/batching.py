"""How many patients go into one search: as many as fit the server's URL limit, halved when refused.

A REST pass costs the EHR one search (at least) per batch of patients and
resource type, so the batch is the lever on requests per pass.  A fixed small
batch wastes requests; a fixed large one breaks on servers whose gateway
refuses long URLs (IIS cuts query strings off at 2 KB by default, Tomcat,
Jetty and nginx at 8 KiB with the headers).  So the batch
is packed by size: ids are added while the whole search URL (base URL,
resource type and every parameter, URL-encoded as ``http.FhirClient`` sends
it) stays within ``max_url_bytes``, and never beyond ``patient_batch_size``
ids (1 for servers without OR-lists: the server profiles set it).

If a server still refuses a search's URL as too long (414, or a 400/404 that
says so), the source halves that batch and every later one of the pass
(``narrowed``) and asks again: the refused search returned nothing, so no page
is lost or read twice.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from adapter import errors

# RFC 9110 §4.1 recommends servers take request lines of at least 8,000 octets, and Tomcat,
# Jetty and nginx count the request line and the headers (a bearer token: 1-2 KB) against
# one 8 KiB buffer by default: 6,000 bytes of URL leaves the headers their room.
DEFAULT_MAX_URL_BYTES = 6000
SEPARATOR_BYTES = len(urllib.parse.quote_plus(","))

# What servers and gateways say when a URL is too long: 414 "URI Too Long" (Jetty, Tomcat,
# nginx), 400 "Request Header Or Cookie Too Large" / "request line too long", IIS 404.15
# "query string too long".
_TOO_LONG = re.compile(r"(uri|url|query string|request[- ]line|header)[^.;]{0,40}too (long|large)", re.I)


@dataclass(frozen=True)
class Query:
    """One search: a resource type and its parameters (without paging).

    ``batch`` holds the OR-list's values (escaped), ``batch_param`` the
    parameter they go into; the query can be split into smaller batches.
    """

    resource_type: str
    params: tuple[tuple[str, str], ...]
    batch_param: str = "patient"
    batch: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, resource_type: str, batch_param: str, batch: Sequence[str], other: Sequence[tuple[str, str]]
    ) -> Query:
        params = ((batch_param, ",".join(batch)), *other)
        return cls(resource_type, params, batch_param, tuple(batch))

    def fingerprint(self) -> bytes:
        return orjson.dumps([self.resource_type, self.params])

    def split(self, size: int) -> list[Query]:
        """This search as several, each with at most ``size`` of the batch, in order."""
        other = [(name, value) for name, value in self.params if name != self.batch_param]
        return [
            Query.of(self.resource_type, self.batch_param, self.batch[start : start + size], other)
            for start in range(0, len(self.batch), size)
        ]


def url_bytes(base_url: str, resource_type: str, params: Sequence[tuple[str, str]]) -> int:
    """The length of the search URL exactly as ``http.FhirClient`` sends it."""
    return len(f"{base_url.rstrip('/')}/{resource_type}?{urllib.parse.urlencode(params)}")


def pack(
    base_url: str,
    resource_type: str,
    batch_param: str,
    values: Sequence[str],
    other: Sequence[tuple[str, str]],
    *,
    max_url_bytes: int,
    most: int,
) -> list[tuple[str, ...]]:
    """``values`` (escaped) in order, in batches whose search URL fits ``max_url_bytes``, each <= ``most``.

    A single value that does not fit alone still gets a batch of its own:
    the server decides, and a refusal names the URL.
    """
    fixed = url_bytes(base_url, resource_type, [(batch_param, ""), *other])
    batches: list[tuple[str, ...]] = []
    current: list[str] = []
    length = fixed
    for value in values:
        cost = len(urllib.parse.quote_plus(value)) + (SEPARATOR_BYTES if current else 0)
        if current and (len(current) >= most or length + cost > max_url_bytes):
            batches.append(tuple(current))
            current, length = [], fixed
            cost -= SEPARATOR_BYTES
        current.append(value)
        length += cost
    if current:
        batches.append(tuple(current))
    return batches


def pack_codes(
    base_url: str,
    resource_type: str,
    codes: Sequence[str],
    extra: Sequence[tuple[str, str]],
    *,
    max_url_bytes: int,
    most: int,
) -> list[tuple[str, ...]]:
    """The codes in chunks of at most ``most`` that take at most half the URL budget.

    The other half is the patients': a pass runs one search per code chunk
    and patient batch, so neither list may crowd the other out.
    """
    other = [("patient", ""), *extra]
    fixed = url_bytes(base_url, resource_type, [("code", ""), *other])
    half = fixed + max(0, max_url_bytes - fixed) // 2
    return pack(base_url, resource_type, "code", codes, other, max_url_bytes=half, most=most)


def url_too_long(error: errors.NetworkError) -> bool:
    """True when the server refused a request because its URL is too long."""
    if error.status == 414:
        return True
    return error.status in (400, 404) and _TOO_LONG.search(str(error)) is not None


def narrowed(queries: Sequence[Query], index: int, size: int) -> list[Query]:
    """The plan with query ``index`` and every later one split into batches of at most ``size``.

    The queries before ``index`` (already read) stay as they are; the rest ask
    for the same patients in the same order, so nothing is skipped or asked twice.
    """
    rest = [part for query in queries[index:] for part in query.split(size)]
    return [*queries[:index], *rest]
