"""Deletions between sweeps, from a type's history: ``[base]/[type]/_history?_since=``.

A search for "changed since" never returns a deleted resource, so without
this an incremental REST pass sees deletions only at the next full sweep
(a day later).  Where the server declares the ``history-type`` interaction
for a type in its CapabilityStatement, the type's history since the pass's
``since`` lists every version written in that window, deletions included
(https://hl7.org/fhir/R4/http.html#history: a deleted version is an entry
whose ``request.method`` is DELETE, without a resource).  Per resource the
newest entry counts, so a resource deleted and created again in the window
is not deleted.  Newest by ``response.lastModified`` or ``meta.lastUpdated``
where an entry has one: servers list history newest first, but that is not
trusted where the entries say otherwise.

Type-level history covers every patient of the site, not only the
roster's.  Of an entry only its reference and whether it is a deletion are
kept, never its resource, and nothing of it is logged; the sync ignores
references it never stored.

Best effort by design: a history that cannot be read (an error, a page that
is not a history Bundle, broken paging, more than ``MAX_PAGES`` pages) skips
the type's deletions for this pass with a warning, and the next full sweep
retires them as before.  It never fails the sync.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import urllib.parse
from typing import Any

from adapter import errors
from adapter.fhir import bundles, http
from adapter.fhir import settings as fhir_settings
from adapter.net import messages

log = logging.getLogger(__name__)

INTERACTION = "history-type"
MAX_PAGES = 500  # of one type in one pass; a longer history is left to the full sweep
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class Deletions:
    """One pass's reader of type histories: the CapabilityStatement is asked at most once per pass."""

    def __init__(self, site: str, settings: fhir_settings.RestSource) -> None:
        self.site = site
        self.enabled = settings.deletions_from_history
        self.page_size = settings.page_size
        self._types: frozenset[str] | None = None  # types declaring history-type; None: not asked yet

    def new_pass(self) -> None:
        """A pass begins: the next type asks the CapabilityStatement again (the server may change)."""
        self._types = None

    def deleted_since(
        self, client: http.FhirClient, resource_type: str, since: dt.datetime | None
    ) -> list[str]:
        """``Type/id`` of the resources of this type deleted after ``since``; [] if unknown or not asked."""
        if since is None or not self.enabled:
            return []
        try:
            if resource_type not in self._history_types(client):
                return []
            return deleted_refs(client, resource_type, since, self.page_size)
        except errors.SourceError as exc:
            log.warning(
                "the server's history of this type could not be read, so its deletions reach the adapter "
                "with the next full sweep instead of this pass: %s",
                exc,
                extra={"site": self.site, "resource_type": resource_type},
            )
            return []

    def _history_types(self, client: http.FhirClient) -> frozenset[str]:
        if self._types is None:
            self._types = frozenset()  # a failed request is not repeated for every type
            statement, _response = client.get_json("metadata", authenticate=False)
            self._types = history_types(statement)
        return self._types


def history_types(statement: dict[str, Any]) -> frozenset[str]:
    """The resource types whose ``history-type`` interaction a CapabilityStatement declares."""
    found = set()
    rests = statement.get("rest") if statement.get("resourceType") == "CapabilityStatement" else None
    for rest in rests if isinstance(rests, list) else []:
        if not isinstance(rest, dict) or rest.get("mode", "server") != "server":
            continue
        resources = rest.get("resource")
        for resource in resources if isinstance(resources, list) else []:
            interactions = resource.get("interaction") if isinstance(resource, dict) else None
            codes = {i.get("code") for i in interactions or [] if isinstance(i, dict)}
            if INTERACTION in codes and isinstance(resource.get("type"), str):
                found.add(resource["type"])
    return frozenset(found)


def since_value(since: dt.datetime) -> str:
    """An instant as ``_since`` and ``_lastUpdated`` take it: UTC to the millisecond, ``Z``.

    The one format for every "changed since" the adapter asks a server: a
    type's history, a search (``search_terms.search_since``), a Bulk export's ``_since``.
    """
    moment = since if since.tzinfo is not None else since.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def deleted_refs(
    client: http.FhirClient, resource_type: str, since: dt.datetime, page_size: int
) -> list[str]:
    """Every page of the type's history since ``since``; the refs whose newest entry is a deletion.

    Raises ``SourceError`` for anything that is not a readable history (the
    caller skips the type's deletions then).
    """
    since_text = since_value(since)
    url = f"{resource_type}/_history"
    params: dict[str, str] | None = {"_since": since_text, "_count": str(page_size)}
    newest: dict[str, tuple[dt.datetime | None, bool]] = {}
    visited: set[str] = set()
    for _page in range(MAX_PAGES):
        body, response = client.get_json(url, params=params, headers=bundles.LENIENT_HEADERS)
        where = f"site {client.site}: {messages.redact_url(response.url)}"
        entries = _entries(body, where)
        for entry in entries:
            found = _entry(entry, resource_type, where)
            if found is None:
                continue
            ref, moment, deleted = found
            held = newest.get(ref)
            # The first entry listed wins (newest first), unless both entries say when and this one is later.
            if held is None or (moment is not None and held[0] is not None and moment > held[0]):
                newest[ref] = (moment, deleted)
        visited.add(bundles.normal_url(response.url))
        next_url = _next(client, response.url, body, where, since_text)
        if next_url is None:
            return sorted(ref for ref, (_moment, deleted) in newest.items() if deleted)
        if not entries:
            raise errors.SourceError(f"{where}: a history page without entries links to a next page")
        if bundles.normal_url(next_url) in visited:
            raise errors.SourceError(f"{where}: the history's next link points back to a page already read")
        url, params = next_url, None
    raise errors.SourceError(
        f"site {client.site}: the {resource_type} history since {since_text} runs over {MAX_PAGES} pages"
    )


def _entries(body: dict[str, Any], where: str) -> list[Any]:
    kind = body.get("resourceType")
    if kind != "Bundle" or body.get("type") != "history":
        shown = f"{str(kind)[:40]!r} of type {str(body.get('type'))[:40]!r}"
        raise errors.SourceError(f"{where}: expected a history Bundle, got {shown}")
    entries = body.get("entry", [])
    if not isinstance(entries, list):
        raise errors.SourceError(f"{where}: Bundle.entry is not a list")
    return entries


def _entry(entry: Any, resource_type: str, where: str) -> tuple[str, dt.datetime | None, bool] | None:
    """(ref, when, deleted) of one history entry of ``resource_type``; None for another type or no ref."""
    if not isinstance(entry, dict):
        raise errors.SourceError(f"{where}: a history entry is not an object")
    request, response = _object(entry.get("request")), _object(entry.get("response"))
    resource = _object(entry.get("resource"))  # {}: none (a deleted version has none)
    kind, resource_id = resource.get("resourceType"), resource.get("id")
    ref = (
        reference(f"{kind}/{resource_id}") if isinstance(kind, str) and isinstance(resource_id, str) else None
    )
    ref = ref or reference(request.get("url")) or reference(entry.get("fullUrl"))
    if ref is None or ref.partition("/")[0] != resource_type:
        return None  # another type (the server answered more than was asked), or nothing to go by
    method = request.get("method")
    status = response.get("status")
    if isinstance(method, str) and method:
        deleted = method.upper() == "DELETE"
    else:
        deleted = not resource and isinstance(status, str) and status.split(" ")[0] in ("204", "410")
    stamp = response.get("lastModified")
    if not isinstance(stamp, str):
        stamp = _object(resource.get("meta")).get("lastUpdated")
    moment = bundles.parse_instant(stamp) if isinstance(stamp, str) else None
    return ref, moment, deleted


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def reference(text: object) -> str | None:
    """``Type/id`` of a reference, relative or absolute, with or without ``/_history/<version>``."""
    if not isinstance(text, str):
        return None
    path = urllib.parse.urlsplit(text.strip()).path.split("/_history")[0].rstrip("/")
    parts = path.split("/")
    if len(parts) < 2 or not parts[-2][:1].isupper() or not _ID.match(parts[-1]):
        return None
    return f"{parts[-2]}/{parts[-1]}"


def _next(client: http.FhirClient, page_url: str, body: dict[str, Any], where: str, since: str) -> str | None:
    """The page's next link (``bundles.next_link``), ``_since`` put back if a history URL lost it."""
    try:
        absolute = bundles.next_link(client, page_url, body)
    except bundles.BrokenPaging as problem:
        raise errors.SourceError(f"{where}: the history's paging is broken: {problem}") from None
    if absolute is None:
        return None
    parts = urllib.parse.urlsplit(absolute)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if parts.path.rstrip("/").endswith("/_history") and "_since" not in dict(query):
        # Seen from sekmet: next links without _since page through all of the type's history.
        query.append(("_since", since))
        absolute = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    return absolute
