"""A fault-injecting reverse proxy on 127.0.0.1, between the adapter and the local FHIR server.

The adapter's HTTP client, paging and SMART auth are unit-tested against
``responses`` mocks, which answer exactly what a test scripted.  A real
hospital network is less polite: gateways answer 429/500/503 with a
Retry-After, drop connections, stall, cut a page short, hand back an HTML
maintenance page with status 200, redirect in circles, a server's paging
loops, and the token endpoint fails like any other.  This proxy puts those faults between the
real CLI and a real FHIR server (sekmet, ``tests/fhirserver.py``), so the
whole path (client, retries, paging, cursors, commits, resume) is exercised
at once.

The FHIR server is started with the proxy's URL as its public base URL, so
its ``next`` links, its ``.well-known/smart-configuration`` token endpoint
and the JWT audience it checks all name the proxy, and the client never
leaves it.

Faults come from a ``FaultPlan``: a deck of faults (kind and target: the
FHIR API or the token endpoint) shuffled by a seeded ``random.Random`` and
dealt to requests at a seeded rate, plus permanent ``Rule``s (a fault for
every request matching a pattern).  A dealt fault is gone from the deck, and
no URL gets more than ``in_a_row`` dealt faults before it is answered once,
fewer than the client's tries, so a run with only a deck is transient by
construction: every kind happens (when there are requests enough), and the
adapter must recover.  ``FaultProxy.injected`` counts what
really happened, so a test can prove its faults were there.
"""

from __future__ import annotations

import email.utils
import http.client
import http.server
import random
import re
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

FHIR = "fhir"
TOKEN = "token"  # noqa: S105 -- the name of a target, not a secret

# The client's retries absorb these (the same request succeeds on a later try).
STATUS_KINDS = ("429", "500", "503")
RETRIED_KINDS = (*STATUS_KINDS, "drop", "cut", "timeout", "expired")
# These fail the pass (nothing from the page is stored); the next pass resumes at the page.
PASS_FAILING_KINDS = ("truncated", "malformed", "html", "loop", "crossed", "garbage")
# No failure at all when once: late, or sent round a redirect back to the same URL.
HARMLESS_KINDS = ("slow", "redirect")
# Kinds that need the upstream's answer (they change it) and only make sense on a GET.
BODY_KINDS = ("cut", "truncated", "malformed", "html", "loop", "crossed")
TOKEN_KINDS = (*STATUS_KINDS, "drop", "garbage")  # what a failing OAuth endpoint does
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "host", "accept-encoding", "content-length"}
)  # fmt: skip


@dataclass(frozen=True)
class Fault:
    """One fault to deal: what goes wrong (``kind``) and where (``FHIR`` or ``TOKEN``)."""

    kind: str
    target: str = FHIR


@dataclass(frozen=True)
class Rule:
    """A permanent fault: every request whose ``"METHOD /path?query"`` matches ``pattern`` gets ``kind``."""

    kind: str
    pattern: str

    def matches(self, request_line: str) -> bool:
        return re.search(self.pattern, request_line) is not None


@dataclass
class FaultPlan:
    """Which request gets which fault: seeded, so a failing run can be replayed exactly."""

    seed: int = 0
    deck: Iterable[Fault] = ()
    rate: float = 0.0  # chance that a FHIR request is dealt a fault from the deck
    token_rate: float = 0.0  # the same for token requests (there are few: tokens are cached)
    in_a_row: int = 2  # at most this many dealt faults per URL in a row: fewer than the client's tries
    rules: Iterable[Rule] = ()
    slow_seconds: float = 0.3  # "slow": late, but well inside the client's read timeout
    stall_seconds: float = 1.5  # "timeout": longer than the client's read timeout
    _cards: list[Fault] = field(init=False)
    _streak: Counter[str] = field(init=False, default_factory=Counter)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._cards = list(self.deck)
        self.rng.shuffle(self._cards)
        self.rules = tuple(self.rules)

    @property
    def left(self) -> list[Fault]:
        """Faults still in the deck (none, once a run has had all of them)."""
        return list(self._cards)

    def choose(self, method: str, path: str, target: str, authorized: bool) -> str | None:
        """The fault for this request, or None to pass it through untouched.

        One random draw per request, in arrival order: the client sends one
        request at a time, so the same seed deals the same faults to the same
        requests on every run.
        """
        request_line = f"{method} {path}"
        with self._lock:
            for rule in self.rules:
                if rule.matches(request_line):
                    return rule.kind
            draw = self.rng.random()
            if draw < (self.token_rate if target == TOKEN else self.rate):
                if self._streak[request_line] < self.in_a_row:
                    for index, card in enumerate(self._cards):
                        if card.target == target and _applies(card.kind, method, authorized):
                            self._streak[request_line] += 1
                            return self._cards.pop(index).kind
            self._streak[request_line] = 0  # answered: the next try of this URL may fail again
            return None

    def pick(self, choices: int) -> int:
        """A seeded number below ``choices`` (where to corrupt a page, which Retry-After form)."""
        with self._lock:
            return self.rng.randrange(choices)

    def put_back(self, kind: str, target: str) -> None:
        """A dealt fault that did not fit the answer (a loop on a page without a next link)."""
        with self._lock:
            self._cards.append(Fault(kind, target))


def _applies(kind: str, method: str, authorized: bool) -> bool:
    if kind in BODY_KINDS:
        return method == "GET"
    if kind == "expired":
        return authorized  # a 401 where no token was sent would be a real refusal, not an expiry
    return True


class FaultProxy(http.server.ThreadingHTTPServer):
    """The proxy server; bound at construction (so its URL is known), serving after ``start()``."""

    daemon_threads = True

    def __init__(self, plan: FaultPlan | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.plan = plan or FaultPlan()
        self.upstream: str | None = None  # root URL of the real server, e.g. http://127.0.0.1:8123
        self.injected: Counter[tuple[str, str]] = Counter()  # (target, kind) -> faults that happened
        self.requests: Counter[str] = Counter()  # target -> requests seen
        self.secrets: set[str] = set()  # client assertions and access tokens that went through
        self.trace: list[str] = []  # "METHOD /path -> fault" per request, for a failing test's message
        self.searches: list[str] = []  # paths of first pages of searches, for "crossed" next links
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/fhir"

    def start(self, upstream: str) -> FaultProxy:
        self.upstream = upstream.rstrip("/")
        self._thread = threading.Thread(target=self.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def use(self, plan: FaultPlan) -> FaultPlan:
        """Switch to a new plan and forget what earlier plans injected."""
        with self._lock:
            self.plan = plan
            self.injected.clear()
            self.requests.clear()
            self.trace.clear()
            self.searches.clear()
        return plan

    def count(self, target: str, kind: str) -> None:
        with self._lock:
            self.injected[(target, kind)] += 1

    def saw(self, target: str, secrets: Iterable[str]) -> None:
        with self._lock:
            self.secrets.update(s for s in secrets if s)

    def arrived(self, target: str, method: str, path: str, kind: str | None) -> None:
        with self._lock:
            self.requests[target] += 1
            self.trace.append(f"{method} {path[:160]} -> {kind or 'ok'}")
            if method == "GET" and "?" in path and "_offset=" not in path:
                self.searches.append(path)


class _Relay(http.server.BaseHTTPRequestHandler):
    """Forwards one request to the upstream server, doing to it what the plan says."""

    server: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, like a real gateway: drops then hit pooled connections

    def do_GET(self) -> None:
        self._relay()

    def do_POST(self) -> None:
        self._relay()

    def do_PUT(self) -> None:
        self._relay()

    def do_DELETE(self) -> None:
        self._relay()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test's output stays readable; ``injected`` says what happened

    # ------------------------------------------------------------------ relay

    def _relay(self) -> None:
        proxy = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = TOKEN if self.path.split("?")[0].endswith("/auth/token") else FHIR
        authorization = self.headers.get("Authorization", "")
        proxy.saw(target, [authorization.removeprefix("Bearer ").strip(), *_assertions(body)])
        plan = proxy.plan
        kind = plan.choose(self.command, self.path, target, authorized=bool(authorization))
        proxy.arrived(target, self.command, self.path, kind)
        try:
            if kind is None or kind == "slow":
                if kind == "slow":
                    time.sleep(plan.slow_seconds)
                    proxy.count(target, kind)
                status, headers, content = self._forward(body)
                self._remember_token(target, status, content)
                self._answer(status, headers, content)
            elif kind in STATUS_KINDS:
                proxy.count(target, kind)
                self._answer(int(kind), {"Retry-After": self._retry_after(plan)}, _outcome(kind))
            elif kind == "expired":
                proxy.count(target, kind)
                self._answer(401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}, _outcome(kind))
            elif kind == "drop":
                proxy.count(target, kind)
                self.close_connection = True  # no status line, no headers: the socket just closes
            elif kind == "timeout":
                proxy.count(target, kind)
                time.sleep(plan.stall_seconds)  # the client gives up first and retries
                self.close_connection = True
            elif kind == "redirect":
                proxy.count(target, kind)  # a gateway bouncing the client back to where it was
                self._answer(302, {"Location": f"{proxy.root_url}{self.path}"}, b"")
            elif kind == "garbage":
                proxy.count(target, kind)
                self._answer(200, {"Content-Type": "application/json"}, b'{"status": "ok"}')
            else:
                self._answer_broken(kind, target, body)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up on us (its read timeout): fine

    def _answer_broken(self, kind: str, target: str, body: bytes) -> None:
        """Body faults: the upstream answers, and the answer is damaged on the way back."""
        proxy, plan = self.server, self.server.plan
        status, headers, content = self._forward(body)
        if status != 200 or not content.startswith(b"{"):
            plan.put_back(kind, target)
            self._answer(status, headers, content)
            return
        if kind in ("loop", "crossed"):
            earlier = [path for path in proxy.searches if path.split("?")[0] == self.path.split("?")[0]]
            other = next((path for path in reversed(earlier) if not _same_search(path, self.path)), None)
            looped = _loop(content, f"{proxy.root_url}{other}" if kind == "crossed" and other else None)
            if looped is None or (kind == "crossed" and other is None):
                plan.put_back(kind, target)
                self._answer(status, headers, content)
                return
            content = looped
        elif kind == "cut":
            # The full length announced, half of it sent, then the connection closes.
            self._answer(status, headers, content, announced=len(content), send=len(content) // 2)
            self.close_connection = True
            proxy.count(target, kind)
            return
        elif kind == "truncated":
            content = content[: len(content) // 2]  # a gateway that buffered half and called it done
        elif kind == "malformed":
            position = plan.pick(len(content))
            content = content[:position] + b"\x00" + content[position + 1 :]  # raw NUL: never valid JSON
        elif kind == "html":
            headers = {"Content-Type": "text/html"}
            content = b"<html><body><h1>Down for maintenance</h1></body></html>"
        proxy.count(target, kind)
        self._answer(status, headers, content)

    def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        upstream = urllib.parse.urlsplit(self.server.upstream or "")
        connection = http.client.HTTPConnection(upstream.hostname or "", upstream.port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            content = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
            return response.status, kept, content
        finally:
            connection.close()

    def _answer(
        self,
        status: int,
        headers: dict[str, str],
        content: bytes,
        *,
        announced: int | None = None,
        send: int | None = None,
    ) -> None:
        self.send_response_only(status)
        if not any(k.lower() == "date" for k in headers):
            self.send_header("Date", self.date_time_string())
        if not any(k.lower() == "content-type" for k in headers):
            self.send_header("Content-Type", "application/fhir+json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content) if announced is None else announced))
        self.end_headers()
        self.wfile.write(content if send is None else content[:send])
        self.wfile.flush()

    def _remember_token(self, target: str, status: int, content: bytes) -> None:
        if target == TOKEN and status == 200:
            try:
                token = orjson.loads(content).get("access_token")
            except (orjson.JSONDecodeError, AttributeError):
                return
            self.server.saw(TOKEN, [str(token)] if token else [])

    @staticmethod
    def _retry_after(plan: FaultPlan) -> str:
        """Both forms RFC 9110 allows, seconds and an HTTP date, with small values."""
        choice = plan.pick(3)
        if choice == 2:
            return email.utils.formatdate(time.time() + 1, usegmt=True)
        return str(choice)


def _assertions(body: bytes) -> list[str]:
    """The signed JWTs in a token request's form: secrets that must never show up in output."""
    if not body:
        return []
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return form.get("client_assertion", [])


def _outcome(kind: str) -> bytes:
    text = "the proxy says: " + {
        "429": "too many requests",
        "500": "internal error",
        "503": "service unavailable",
        "expired": "token expired",
    }.get(kind, kind)
    issue = {"severity": "error", "code": "transient", "diagnostics": text}
    return orjson.dumps({"resourceType": "OperationOutcome", "issue": [issue]})


def _loop(content: bytes, elsewhere: str | None = None) -> bytes | None:
    """The page with its ``next`` link pointing back.

    To ``elsewhere`` (the first page of an earlier search: "crossed"), else
    to this search's first page, which is the page itself on a first page.
    """
    try:
        bundle = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    links = {link.get("relation"): link for link in bundle.get("link") or [] if isinstance(link, dict)}
    if "next" not in links:
        return None
    back = elsewhere or (links.get("first") or links.get("self") or {}).get("url")
    if back is None:
        return None
    links["next"]["url"] = back
    return orjson.dumps(bundle)


def _same_search(one: str, other: str) -> bool:
    """Two request paths of the same search (paging parameters aside)."""

    def params(path: str) -> list[tuple[str, str]]:
        query = urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query)
        return sorted((k, v) for k, v in query if k not in ("_offset", "_count"))

    return params(one) == params(other)
