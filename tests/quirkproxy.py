"""A quirk-injecting reverse proxy on 127.0.0.1: a standard FHIR server that behaves like a real EHR.

Issue 15.  sekmet (``tests/fhirserver.py``) follows the FHIR search rules
closely; hospital EHRs bend them, each in its documented way.  This proxy
stands between the adapter and a real sekmet server and makes it bend the
rules in those ways, each switchable at runtime through a ``Quirks``
dataclass, so a test can show that the adapter notices (``check``), refuses
or adapts, and never stores what it did not ask for.

What sekmet 0.1.1 does natively, and so what the proxy does without quirks
(it passes every request and answer through untouched, byte for byte):

- paging: ``_count`` (default 20, no upper cap: ``_count=100000`` answers
  everything) and ``_offset``; every link (self, first, previous, next, last)
  repeats the known search parameters in the order given, then
  ``_count`` and ``_offset``;
- ``Prefer: handling=strict``: honoured, an unknown parameter gets 400 with
  an OperationOutcome (``not-supported``); without it (lenient) the unknown
  parameter is ignored, left out of the self link, and named in an
  OperationOutcome entry (``search.mode = outcome``, warning
  ``... parameter ignored``) on every page;
- ``_lastUpdated``: honoured (``gt<server time>`` answers nothing; note that
  sekmet sets ``meta.lastUpdated`` itself, to the time of the load);
- OR lists (``patient=a,b``, ``subject=Patient/a,Patient/b``,
  ``identifier=s|a,s|b``): honoured;
- ``category``: optional on Observation searches.

The quirks (the ``Quirks`` fields; ``QuirkProxy.injected[<field name>]``
counts the requests each one really changed):

``next_drops_params``
    Every searchset Bundle's ``next`` link keeps only ``_count`` and
    ``_offset`` (``<base>/Observation?_count=50&_offset=50``), like the
    independent server of issue 15.  Such a link is forwarded as it is, so its
    answer really is the unfiltered search: every resource of the type on the
    server, at that offset.
``last_updated_ignored``
    ``_lastUpdated`` is dropped before forwarding: old resources come back.
``or_list``
    ``"refuse"``: a ``patient``/``subject``/``identifier`` value holding a
    comma-separated list gets 400 with an OperationOutcome; ``"first_only"``:
    only the list's first value is forwarded (the answer looks complete).
``extra_patients``
    The first page (no ``_offset`` or ``_offset=0``) of a Patient search also
    holds up to ``extra_entries`` other Patients from the server (Epic's
    ``$match``-like Patient search); the first page of a search with
    ``patient``/``subject`` holds up to ``extra_entries`` resources of
    patients not asked for (the same search without the patient restriction,
    round robin over the other patients).  They are marked ``match`` and
    ``Bundle.total`` grows by their number; ``QuirkProxy.added`` lists them.
``extra_codes``
    Observation searches ignore ``code``: every code of the asked patients.
``count_cap``
    ``_count`` is silently lowered to this (and set, where the request had
    none and sekmet's default 20 is more); pages and links say the capped
    count, and the next links continue properly.
``category_required``
    An Observation search without ``category`` gets 400 with an
    OperationOutcome naming the missing parameter (Epic).
``outcome_warning``
    Every 200 searchset Bundle gets an extra entry
    ``{"resource": OperationOutcome(warning), "search": {"mode": "outcome"}}``.
``strict_ignored``
    ``Prefer: handling=strict`` is taken out of the request, so unknown
    parameters are ignored instead of refused, and silently: sekmet's
    "parameter ignored" outcome entry is taken out of the page (counted when
    sekmet's self link shows that it dropped a parameter).  Without the quirk
    the proxy refuses nothing itself: sekmet's own 400 is the strict answer.

Where a quirk forwards another query than the client sent (``_lastUpdated``
dropped, an OR list cut, ``code`` dropped, ``_count`` capped), the answer's
links are put back to the client's parameters (with the forwarded paging
values): a server that ignores a parameter still repeats it in its links,
so the client cannot tell from the links, and following them keeps the
quirk going page after page.  ``next_drops_params`` is applied after that.

Only GET searches on ``<base>/<Type>`` are changed; reads, transactions,
``metadata`` and Bulk Data requests pass through untouched.  The FHIR server
must be started with ``QuirkProxy.base_url`` as its public base URL (see
``start_quirk_server``), so its links name the proxy.

Use it through the ``quirk_server`` fixture of ``tests/fhir/conftest.py``
(one session-wide sekmet with demo-north, demo-east and three more
non-roster patients with Observations, administrations and procedures;
every quirk off and the counts cleared at the start and end of each test)::

    def test_something(quirk_server: QuirkServer) -> None:
        quirk_server.quirks.next_drops_params = True  # or: quirk_server.quirks = Quirks(...)
        ...  # point the adapter at quirk_server.url
        assert quirk_server.injected["next_drops_params"] > 0

Its data is shared by every test of the session: read it, never change it
(start your own with ``start_quirk_server(fhir_server_factory, data_dir)``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import http.server
import json
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

# As in tests/reliability/faultproxy.py (not importable from other test folders).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "host", "accept-encoding", "content-length"}
)  # fmt: skip

PAGING = ("_count", "_offset")  # sekmet's paging parameters
SEKMET_DEFAULT_COUNT = 20
OR_LIST_PARAMS = ("patient", "subject", "identifier")
DATA_TYPES = ("Observation", "MedicationAdministration", "Procedure")
ALL_AT_ONCE = 5000  # _count of the proxy's own searches for extra entries
QUIRK_NAMES = (
    "next_drops_params",
    "last_updated_ignored",
    "or_list",
    "extra_patients",
    "extra_codes",
    "count_cap",
    "category_required",
    "outcome_warning",
    "strict_ignored",
)

Params = list[tuple[str, str]]


@dataclass
class Quirks:
    """Which rules the server bends; change the fields at any time (the next request sees them)."""

    next_drops_params: bool = False
    last_updated_ignored: bool = False
    or_list: Literal["refuse", "first_only"] | None = None
    extra_patients: bool = False
    extra_codes: bool = False
    count_cap: int | None = None
    category_required: bool = False
    outcome_warning: bool = False
    strict_ignored: bool = False
    extra_entries: int = 3  # how many unasked entries ``extra_patients`` adds to a first page

    def active(self) -> list[str]:
        """The names of the quirks switched on."""
        return [name for name in QUIRK_NAMES if getattr(self, name) not in (None, False)]


class QuirkProxy(http.server.ThreadingHTTPServer):
    """The proxy server; bound at construction (so its URL is known), serving after ``start()``."""

    daemon_threads = True

    def __init__(self, quirks: Quirks | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _QuirkRelay)
        self.quirks = quirks or Quirks()
        self.upstream: str | None = None  # root URL of the real server, e.g. http://127.0.0.1:8123
        self.injected: Counter[str] = Counter()  # quirk name -> requests it changed
        self.requests: Counter[str] = Counter()  # "METHOD /path" (no query) -> requests seen
        self.added: list[str] = []  # "Type/id" of every entry ``extra_patients`` added
        self.trace: list[str] = []  # "METHOD /path?query -> quirks" per request, for failure messages
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/fhir"

    def start(self, upstream: str) -> QuirkProxy:
        self.upstream = upstream.rstrip("/")
        self._thread = threading.Thread(target=self.serve_forever, name="quirk-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def reset(self, quirks: Quirks | None = None) -> Quirks:
        """Switch to ``quirks`` (default: none) and forget the counts and the trace."""
        with self._lock:
            self.quirks = quirks or Quirks()
            self.injected.clear()
            self.requests.clear()
            self.added.clear()
            self.trace.clear()
        return self.quirks

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.injected[name] += amount

    def arrived(self, method: str, path: str) -> None:
        with self._lock:
            self.requests[f"{method} {urllib.parse.urlsplit(path).path}"] += 1

    def did(self, method: str, path: str, names: list[str], status: int) -> None:
        with self._lock:
            self.trace.append(f"{method} {path[:200]} -> {status} {','.join(names) or 'as is'}")

    def note_added(self, refs: list[str]) -> None:
        with self._lock:
            self.added.extend(refs)


class _QuirkRelay(http.server.BaseHTTPRequestHandler):
    """Forwards one request to the upstream server, bending it as the quirks say."""

    server: QuirkProxy
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._relay()

    def do_POST(self) -> None:
        self._relay()

    def do_PUT(self) -> None:
        self._relay()

    def do_DELETE(self) -> None:
        self._relay()

    def log_message(self, format: str, *args: object) -> None:
        pass

    # ------------------------------------------------------------------ relay

    def _relay(self) -> None:
        proxy = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        proxy.arrived(self.command, self.path)
        quirks = dataclasses.replace(proxy.quirks)  # one consistent set for the whole request
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        split = urllib.parse.urlsplit(self.path)
        resource_type = _search_type(split.path)
        done: list[str] = []
        try:
            if self.command != "GET" or resource_type is None:
                status, answer_headers, content = self._upstream(self.command, self.path, headers, body)
            else:
                status, answer_headers, content = self._search(quirks, resource_type, split, headers, done)
            for name in done:
                proxy.count(name)
            proxy.did(self.command, self.path, done, status)
            self._answer(status, answer_headers, content)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _search(
        self,
        quirks: Quirks,
        resource_type: str,
        split: urllib.parse.SplitResult,
        headers: dict[str, str],
        done: list[str],
    ) -> tuple[int, dict[str, str], bytes]:
        asked = urllib.parse.parse_qsl(split.query, keep_blank_values=True)

        # Refusals: the request never reaches the server.
        if quirks.category_required and resource_type == "Observation":
            if not any(_base(name) == "category" for name, _ in asked):
                done.append("category_required")
                return _refusal(
                    "required",
                    "Observation searches require the category parameter "
                    "(missing: category); add category=laboratory, vital-signs, ...",
                )
        or_lists = [name for name, value in asked if _base(name) in OR_LIST_PARAMS and len(_split(value)) > 1]
        if quirks.or_list == "refuse" and or_lists:
            done.append("or_list")
            return _refusal(
                "not-supported",
                f"only one value is allowed for {', '.join(sorted(set(or_lists)))}: "
                "searches for several values at once (OR lists) are not supported",
            )

        # The query the server really gets.
        forwarded: Params = []
        for name, value in asked:
            if quirks.last_updated_ignored and _base(name) == "_lastUpdated":
                _once(done, "last_updated_ignored")
                continue
            if quirks.extra_codes and resource_type == "Observation" and _base(name) == "code":
                _once(done, "extra_codes")
                continue
            if quirks.or_list == "first_only" and name in or_lists:
                _once(done, "or_list")
                value = _split(value)[0]
            forwarded.append((name, value))
        counts = [value for name, value in forwarded if name == "_count"]
        if quirks.count_cap is not None and (not counts or counts[-1].isdigit()):  # else sekmet's 400
            wanted = int(counts[-1]) if counts else SEKMET_DEFAULT_COUNT
            if wanted > quirks.count_cap:
                forwarded = [(n, v) for n, v in forwarded if n != "_count"]
                offset = [i for i, (n, _) in enumerate(forwarded) if n == "_offset"]
                forwarded.insert(offset[0] if offset else len(forwarded), ("_count", str(quirks.count_cap)))
                done.append("count_cap")
        changed = forwarded != asked
        path = f"{split.path}?{urllib.parse.urlencode(forwarded)}" if changed else self.path

        strict_stripped = False
        if quirks.strict_ignored:
            for name in [n for n in headers if n.lower() == "prefer"]:
                parts = [p.strip() for p in headers[name].split(",")]
                kept = [p for p in parts if p != "handling=strict"]
                strict_stripped = strict_stripped or len(kept) < len(parts)
                if kept:
                    headers[name] = ", ".join(kept)
                else:
                    del headers[name]

        status, answer_headers, content = self._upstream("GET", path, headers, b"")
        if status != 200 or not content.startswith(b"{"):
            return status, answer_headers, content
        bundle = orjson.loads(content)
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "searchset":
            return status, answer_headers, content

        touched = changed
        if strict_stripped and _server_dropped(bundle, forwarded):
            done.append("strict_ignored")
            touched = _silence(bundle) or touched
        if changed:
            _restore_links(bundle, asked)
        if quirks.next_drops_params and _drop_next_params(bundle):
            done.append("next_drops_params")
            touched = True
        if quirks.extra_patients and _first_page(forwarded):
            added = self._extra_entries(quirks, resource_type, forwarded, bundle)
            if added:
                done.append("extra_patients")
                self.server.note_added(added)
                touched = True
        if quirks.outcome_warning:
            bundle.setdefault("entry", []).append(_warning_entry())
            done.append("outcome_warning")
            touched = True
        if touched:
            content = orjson.dumps(bundle)
        return status, answer_headers, content

    def _extra_entries(
        self, quirks: Quirks, resource_type: str, forwarded: Params, bundle: dict[str, Any]
    ) -> list[str]:
        """Add up to ``extra_entries`` resources the search did not ask for; their references."""
        entries = bundle.setdefault("entry", [])
        present = {
            f"{resource_type}/{e['resource'].get('id')}"
            for e in entries
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        }
        if resource_type == "Patient":
            restriction = {"identifier", "_id", "name", "family", "given", "birthdate"}
        else:
            restriction = {"patient", "subject"}
        asked_patients = {
            ref.rsplit("/", 1)[-1]
            for name, value in forwarded
            if _base(name) in ("patient", "subject")
            for ref in _split(value)
        }
        if resource_type != "Patient" and not asked_patients:
            return []  # a search of every patient's data: nothing is extra
        wider = [(n, v) for n, v in forwarded if _base(n) not in restriction and n not in PAGING]
        wider.append(("_count", str(ALL_AT_ONCE)))
        status, _, content = self._upstream(
            "GET", f"/fhir/{resource_type}?{urllib.parse.urlencode(wider)}", {}, b""
        )
        if status != 200:
            return []
        candidates: dict[str, list[dict[str, Any]]] = {}  # patient id -> entries, in server order
        for entry in orjson.loads(content).get("entry") or []:
            resource = entry.get("resource") or {}
            if f"{resource_type}/{resource.get('id')}" in present:
                continue
            owner = (
                str(resource.get("id"))
                if resource_type == "Patient"
                else str((resource.get("subject") or {}).get("reference", "")).rsplit("/", 1)[-1]
            )
            if owner in asked_patients:
                continue
            candidates.setdefault(owner, []).append(entry)
        chosen: list[dict[str, Any]] = []
        queues = list(candidates.values())
        while queues and len(chosen) < quirks.extra_entries:
            for queue in list(queues):
                if len(chosen) < quirks.extra_entries:
                    chosen.append(queue.pop(0))
                if not queue:
                    queues.remove(queue)
        for entry in chosen:
            entry["search"] = {"mode": "match"}
        entries.extend(chosen)
        if chosen and isinstance(bundle.get("total"), int):
            bundle["total"] += len(chosen)
        return [f"{resource_type}/{e['resource']['id']}" for e in chosen]

    # ------------------------------------------------------------------ plumbing

    def _upstream(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        upstream = urllib.parse.urlsplit(self.server.upstream or "")
        connection = http.client.HTTPConnection(upstream.hostname or "", upstream.port, timeout=60)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            content = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
            return response.status, kept, content
        finally:
            connection.close()

    def _answer(self, status: int, headers: dict[str, str], content: bytes) -> None:
        self.send_response_only(status)
        if not any(k.lower() == "date" for k in headers):
            self.send_header("Date", self.date_time_string())
        if not any(k.lower() == "content-type" for k in headers):
            self.send_header("Content-Type", "application/fhir+json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)
        self.wfile.flush()


# ---------------------------------------------------------------------- helpers


def _search_type(path: str) -> str | None:
    """``Observation`` for ``/fhir/Observation``; None for anything that is not a type-level search."""
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "fhir" and parts[1][:1].isupper():
        return parts[1]
    return None


def _base(name: str) -> str:
    """A parameter's name without its modifier (``code:in`` -> ``code``)."""
    return name.split(":", 1)[0]


def _split(value: str) -> list[str]:
    """The values of an OR list; an escaped comma (``\\,``) stays inside its value."""
    values, current, escaped = [], "", False
    for char in value:
        if char == "," and not escaped:
            values.append(current)
            current = ""
        else:
            current += char
        escaped = char == "\\" and not escaped
    values.append(current)
    return values


def _once(done: list[str], name: str) -> None:
    if name not in done:
        done.append(name)


def _first_page(params: Params) -> bool:
    return all(value in ("", "0") for name, value in params if name == "_offset")


def _refusal(code: str, text: str) -> tuple[int, dict[str, str], bytes]:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
    return 400, {"Content-Type": "application/fhir+json"}, orjson.dumps(outcome)


def _warning_entry() -> dict[str, Any]:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "warning",
                "code": "processing",
                "diagnostics": "some results may be missing: a data source was not available",
            }
        ],
    }
    return {"resource": outcome, "search": {"mode": "outcome"}}


def _query(url: str) -> Params:
    return urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True)


def _with_query(url: str, params: Params) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(query=urllib.parse.urlencode(params)))


def _links(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [link for link in bundle.get("link") or [] if isinstance(link, dict) and link.get("url")]


def _restore_links(bundle: dict[str, Any], asked: Params) -> None:
    """Every link with the client's search parameters and the server's paging values."""
    search = [(n, v) for n, v in asked if n not in PAGING]
    for link in _links(bundle):
        paging = [(n, v) for n, v in _query(link["url"]) if n in PAGING]
        link["url"] = _with_query(link["url"], search + paging)


def _drop_next_params(bundle: dict[str, Any]) -> bool:
    """Keep only the paging parameters in the next link; True if that dropped something."""
    for link in _links(bundle):
        if link.get("relation") == "next":
            query = _query(link["url"])
            paging = [(n, v) for n, v in query if n in PAGING]
            if paging != query:
                link["url"] = _with_query(link["url"], paging)
                return True
    return False


def _silence(bundle: dict[str, Any]) -> bool:
    """Take out sekmet's outcome entries about ignored parameters; True if there were any."""
    entries = bundle.get("entry") or []
    kept = [entry for entry in entries if not _ignored_parameter_note(entry)]
    if len(kept) == len(entries):
        return False
    bundle["entry"] = kept
    return True


def _ignored_parameter_note(entry: dict[str, Any]) -> bool:
    resource = entry.get("resource") or {}
    return (entry.get("search") or {}).get("mode") == "outcome" and any(
        "parameter ignored" in str(issue.get("diagnostics", "")) for issue in resource.get("issue") or []
    )


def _server_dropped(bundle: dict[str, Any], forwarded: Params) -> bool:
    """True if the server's self link lacks a search parameter it was sent (it ignored it)."""
    for link in _links(bundle):
        if link.get("relation") == "self":
            kept = {n for n, _ in _query(link["url"])}
            return any(n not in kept for n, _ in forwarded if n not in PAGING)
    return False


# ---------------------------------------------------------------------- a server behind the proxy

DEMO_SITES = ("demo-north", "demo-east")
# Non-roster patients added to the demo sites' own (one per site): (id, MRN system, MRN, cloned from).
FOREIGN_PATIENTS = (
    ("pn-foreign-01", "http://hospital-north.example/fhir/mrn", "NX0000001", "pn-1a4d059c5932"),
    ("pn-foreign-02", "http://hospital-north.example/fhir/mrn", "NX0000002", "pn-b1d9624535a1"),
    ("pe-foreign-01", "http://hospital-east.example/fhir/mrn", "ZX00000001", "pe-1483ff0672d1"),
)
FOREIGN_OBSERVATIONS = 8  # per foreign patient: the first Observation of each of 8 codes of its model
FOREIGN_ADMINISTRATIONS = 2
FOREIGN_PROCEDURES = 1


@dataclass
class QuirkServer:
    """A sekmet server with the demo sites and foreign patients, reached through a ``QuirkProxy``.

    ``url`` is the base URL to give the adapter; ``quirks`` is the live
    ``Quirks`` (change its fields, or assign a new one); ``injected``,
    ``requests`` and ``added`` say what the proxy did; ``reset()`` switches
    every quirk off and clears the counts.  The server's data is shared:
    read it, do not change it.
    """

    server: Any  # fhirserver.FhirServer
    proxy: QuirkProxy
    roster_patients: dict[str, list[str]] = field(default_factory=dict)  # site -> roster Patient ids
    foreign_patients: list[str] = field(default_factory=list)  # non-roster Patient ids (all sites)
    foreign: dict[str, list[str]] = field(default_factory=dict)  # type -> ids of non-roster resources

    @property
    def url(self) -> str:
        return self.proxy.base_url

    @property
    def direct_url(self) -> str:
        """The server itself, bypassing the proxy (its links still name the proxy)."""
        return str(self.server.base_url)

    @property
    def quirks(self) -> Quirks:
        return self.proxy.quirks

    @quirks.setter
    def quirks(self, quirks: Quirks) -> None:
        self.proxy.quirks = quirks

    @property
    def injected(self) -> Counter[str]:
        return self.proxy.injected

    @property
    def requests(self) -> Counter[str]:
        return self.proxy.requests

    @property
    def added(self) -> list[str]:
        return self.proxy.added

    def reset(self, quirks: Quirks | None = None) -> Quirks:
        return self.proxy.reset(quirks)

    def stop(self) -> None:
        self.proxy.stop()
        self.server.stop()


def demo_resources(data_dir: Path, site: str, resource_type: str) -> list[dict[str, Any]]:
    """A demo site's resources of one type, as ``FhirServer.load_ndjson`` loads them (each id once)."""
    found: dict[str, dict[str, Any]] = {}
    for line in (data_dir / site / f"{resource_type}.ndjson").read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            resource = json.loads(line)
            if isinstance(resource, dict) and resource.get("resourceType") == resource_type:
                if resource.get("id"):
                    found.setdefault(str(resource["id"]), resource)
    return list(found.values())


def _owner(resource: dict[str, Any]) -> str:
    return str((resource.get("subject") or {}).get("reference", "")).rsplit("/", 1)[-1]


def foreign_resources(data_dir: Path) -> list[dict[str, Any]]:
    """Non-roster Patients with data cloned from a roster patient (same codes: they fit the searches)."""
    everything = {
        resource_type: [r for site in DEMO_SITES for r in demo_resources(data_dir, site, resource_type)]
        for resource_type in ("Patient", *DATA_TYPES)
    }
    patients = {p["id"]: p for p in everything["Patient"]}
    limits = {
        "Observation": FOREIGN_OBSERVATIONS,
        "MedicationAdministration": FOREIGN_ADMINISTRATIONS,
        "Procedure": FOREIGN_PROCEDURES,
    }
    made: list[dict[str, Any]] = []
    for number, (patient_id, system, mrn, model) in enumerate(FOREIGN_PATIENTS, start=1):
        patient = json.loads(json.dumps(patients[model]))
        patient.pop("meta", None)
        patient["id"] = patient_id
        patient["identifier"] = [{"system": system, "value": mrn}]
        patient["name"] = [{"family": f"Foreign{number}", "given": ["Not", "Enrolled"]}]
        made.append(patient)
        for resource_type, limit in limits.items():
            codes: set[str] = set()
            for resource in everything[resource_type]:
                key = resource.get("code") if resource_type == "Observation" else resource["id"]
                code = json.dumps(key, sort_keys=True)  # one Observation per code
                if _owner(resource) != model or code in codes or len(codes) >= limit:
                    continue
                codes.add(code)
                clone = json.loads(json.dumps(resource))
                clone.pop("meta", None)
                clone["id"] = f"{resource['id'][:4]}foreign-{number:02d}-{len(codes):02d}"
                clone["subject"] = {"reference": f"Patient/{patient_id}"}
                made.append(clone)
    return made


def start_quirk_server(start_server: Callable[..., Any], data_dir: Path) -> QuirkServer:
    """Start a server behind a new proxy and load the demo sites and the foreign patients.

    ``start_server(public_base_url=...)`` starts the server and returns its
    ``FhirServer`` (the ``fhir_server_factory`` fixture does).
    """
    proxy = QuirkProxy()
    server = start_server(public_base_url=proxy.base_url)
    proxy.start(server.root_url)
    try:
        roster: dict[str, list[str]] = {}
        for site in DEMO_SITES:
            server.load_ndjson(data_dir / site)
            mrns = {
                line.split(",")[1]
                for line in (data_dir / site / "roster.csv").read_text(encoding="utf-8").splitlines()[1:]
                if line.strip()
            }
            roster[site] = [
                str(patient["id"])
                for patient in demo_resources(data_dir, site, "Patient")
                if any(i.get("value") in mrns for i in patient.get("identifier", []))
            ]
        extra = foreign_resources(data_dir)
        server.put_resources(extra)
        enrolled = {pid for ids in roster.values() for pid in ids}
        loaded = {
            resource_type: [r for site in DEMO_SITES for r in demo_resources(data_dir, site, resource_type)]
            + [r for r in extra if r["resourceType"] == resource_type]
            for resource_type in ("Patient", *DATA_TYPES)
        }
        foreign_patients = [str(p["id"]) for p in loaded["Patient"] if p["id"] not in enrolled]
        foreign = {"Patient": foreign_patients}
        for resource_type in DATA_TYPES:
            foreign[resource_type] = [
                str(r["id"]) for r in loaded[resource_type] if _owner(r) in foreign_patients
            ]
        return QuirkServer(server, proxy, roster, foreign_patients, foreign)
    except BaseException:
        proxy.stop()
        raise
