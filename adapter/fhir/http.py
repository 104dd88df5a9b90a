"""One home for talking HTTP to a site's FHIR server: pooled session, retries, plain-words errors.

Modelled on cumulus-fhir-support ``http.py``: a single request is sorted into
*temporary* failures (timeouts, dropped connections, 408, 429, 500, 502,
503, 504), which are retried with exponential backoff and jitter, and
*fatal* ones, which are not; a 401 gets one re-authentication that does not
count as a retry, because an expired token is routine, not a failure.

Two things go beyond the model.  ``Retry-After`` (seconds or an HTTP date,
https://www.rfc-editor.org/rfc/rfc9110#name-retry-after) is honoured but
capped, and the total wait per request is capped too, so a server asking for
five hours (smart-fetch ``bulk_utils.py`` saw Cerner do that) cannot stall a
scheduled pass.  And every message names the site and the URL with the
values of identifying query parameters removed: patient ids and identifier
values are PHI-adjacent and must not reach logs or terminals.

Nothing a server sends is read without a bound: an answer is read in chunks
up to ``max_body_bytes`` (``[sites.source] max_response_bytes``) and refused
beyond it with a ``SourceError`` that names the URL and the limit, never the
content; an error body is read only as far as its first 64 KiB.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import prometheus_client
import requests
import requests.adapters

from adapter import __version__, errors
from adapter.fhir import ndjson
from adapter.fhir import settings as fhir_settings

log = logging.getLogger(__name__)

RESPONSES = prometheus_client.Counter(
    "trial_adapter_http_responses",
    "HTTP responses received from site FHIR servers, by site and status code.",
    ["site", "status"],
)

# https://developer.mozilla.org/en-US/docs/Web/HTTP/Status: the statuses a retry may cure.
# 500 is included because servers (Oracle Health among them, per cumulus-fhir-support)
# use it for blips as well as for real faults, and the retries are few and spaced.
TEMPORARY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

# The default of [sites.source] max_response_bytes: room for a page of a hundred large
# resources, or for one over max_resource_bytes, which then becomes an issue.
MAX_RESPONSE_BYTES = fhir_settings.MAX_RESPONSE_BYTES
READ_CHUNK_BYTES = 1 << 16
ERROR_BODY_BYTES = 1 << 16

# Query parameters whose values are safe to show: paging and filters, never who.
SHOWN_PARAMETERS = frozenset(
    {"_count", "_offset", "_lastUpdated", "_since", "_type", "_outputFormat", "_sort", "_total",
     "_summary", "_elements", "_format", "_getpages", "_page", "category", "status"}
)  # fmt: skip

FIXES = {
    400: "the server rejected the request; check that it supports the search parameters "
    "(trial-adapter check lists them)",
    401: "the server refused the credentials; check [sites.source.auth] and that the site "
    "registered the adapter's client and key",
    403: "the credentials lack permission; ask the site for read access (scopes) to this resource type",
    404: "check [sites.source] base_url (and group_id for Bulk Data)",
    406: "the server cannot answer in FHIR JSON; check that base_url is a FHIR R4 endpoint",
}


class Authorizer(Protocol):
    """What the client needs from an auth scheme (``adapter.fhir.auth`` implements it)."""

    def headers(self, client: FhirClient) -> dict[str, str]:
        """Headers to add to a request to the FHIR server (may fetch a token first)."""
        ...

    def refresh(self, client: FhirClient) -> bool:
        """Get fresh credentials after a 401; False when the scheme has none to get."""
        ...


class Anonymous:
    """No credentials: test servers, or a site that authenticates by mutual TLS alone."""

    def headers(self, client: FhirClient) -> dict[str, str]:
        return {}

    def refresh(self, client: FhirClient) -> bool:
        return False


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request; see ``RetrySettings`` in the config for the meaning."""

    attempts: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    retry_after_cap: float = 120.0
    max_wait: float = 600.0

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1-based).

        The server's Retry-After wins when given (capped); otherwise exponential
        backoff with "equal jitter" (half fixed, half random), so many adapters
        hit by the same outage do not come back in lockstep.
        """
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        ceiling = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Retry-After in seconds from its two forms, delay-seconds and HTTP-date (RFC 9110 §10.2.3)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


def redact_url(url: str) -> str:
    """The URL as it may appear in messages: values of identifying parameters replaced.

    ``Observation?patient=a,b,c&_count=50`` becomes
    ``Observation?patient=…(3)&_count=50``: the reader still sees what kind of
    query failed and how many values it carried, never whose.
    """
    parts = urllib.parse.urlsplit(url)
    if not parts.query:
        return url
    shown = []
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if name.split(":")[0] in SHOWN_PARAMETERS:
            shown.append(f"{name}={value}")
        else:
            shown.append(f"{name}=…({len(value.split(','))})")
    return urllib.parse.urlunsplit(parts._replace(query="&".join(shown)))


def outcome_text(body: Any) -> str | None:
    """Plain words from an OperationOutcome or an OAuth error body, if the body is one.

    https://hl7.org/fhir/R4/operationoutcome.html: each issue's ``details.text``
    or ``diagnostics``, else its code; OAuth (RFC 6749 §5.2): ``error_description``.
    """
    if not isinstance(body, dict):
        return None
    if body.get("resourceType") == "OperationOutcome":
        texts = []
        for issue in body.get("issue") or []:
            if not isinstance(issue, dict):
                continue
            details = issue.get("details")
            detail_text = details.get("text") if isinstance(details, dict) else None
            text = detail_text or issue.get("diagnostics") or issue.get("code") or "no details"
            texts.append(f"{issue.get('severity', 'error')}: {text}")
        return "; ".join(texts[:3]) or "an OperationOutcome without issues"
    if isinstance(body.get("error"), str):
        return str(body.get("error_description") or body["error"])
    return None


def scrub(text: str, sensitive: Iterable[str]) -> str:
    """Remove values we sent (patient ids, identifier values) from a server's message.

    Servers like to echo the offending parameter back ("no patient MRN123");
    the echo must not carry the value into our logs.
    """
    for value in sorted({v for v in sensitive if len(v) >= 3}, key=len, reverse=True):
        text = text.replace(value, "…")
    return text


class FhirClient:
    """Requests to one site's FHIR server, with the site's auth, TLS and retry settings."""

    def __init__(
        self,
        site: str,
        base_url: str,
        *,
        auth: Authorizer | None = None,
        session: requests.Session | None = None,
        timeout: float = 60.0,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        max_body_bytes: int = MAX_RESPONSE_BYTES,
        max_resource_bytes: int = ndjson.MAX_RESOURCE_BYTES,
    ) -> None:
        self.site = site
        self.max_body_bytes = max_body_bytes  # largest answer read; larger is a SourceError
        self.max_resource_bytes = max_resource_bytes  # largest resource handed on (bundles.read_page)
        self.base_url = base_url.rstrip("/")
        self.auth: Authorizer = auth or Anonymous()
        self.timeout = (min(10.0, timeout), timeout)  # (connect, read)
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.Random()  # noqa: S311 -- jitter, not cryptography
        self.session = session or _pooled_session()
        self.session.headers["User-Agent"] = f"trial-adapter/{__version__}"  # sites see who calls
        self.session.verify = verify
        if cert is not None:
            self.session.cert = cert
        if verify is False:
            log.warning(
                "TLS certificate verification is OFF for this site: anyone on the network path can "
                "read and alter its data; set [sites.source.tls] verify = true",
                extra={"site": site},
            )

    # ------------------------------------------------------------------ urls

    def url(self, path_or_url: str) -> str:
        """An absolute URL: paths are taken relative to the base URL."""
        if urllib.parse.urlsplit(path_or_url).scheme:
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def same_server(self, url: str) -> bool:
        """True when ``url`` is on the base URL's scheme, host and port (credentials may go there)."""
        ours, theirs = urllib.parse.urlsplit(self.base_url), urllib.parse.urlsplit(url)
        return (ours.scheme, ours.netloc.lower()) == (theirs.scheme, theirs.netloc.lower())

    # ------------------------------------------------------------- requests

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        stream: bool = False,
        authenticate: bool = True,
        sensitive: Iterable[str] = (),
        accept: Iterable[int] = (200,),
    ) -> requests.Response:
        """Send one request, retrying what may pass; return a response whose status is in ``accept``.

        ``data`` may be a function, called for each try: a token request needs a
        new client assertion every time (servers refuse a ``jti`` seen before).
        Without ``stream`` the body is read here, in chunks and at most
        ``max_body_bytes`` of it (a larger one is a ``SourceError``); a
        connection that breaks off while it is read is retried like any other.
        Raises ``TemporaryNetworkError`` when retries ran out and
        ``FatalNetworkError`` for failures retrying cannot fix.
        """
        url = self.url(url)
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urllib.parse.urlencode(params)}"
        sensitive = tuple(sensitive)
        accepted = frozenset(accept)
        waited, tries, reauthenticated = 0.0, 0, False
        while True:
            tries += 1
            request_headers = dict(headers or {})
            if authenticate:
                request_headers.update(self.auth.headers(self))
            try:
                body = data() if callable(data) else data
                response = self.session.request(
                    method, url, headers=request_headers, data=body, stream=True, timeout=self.timeout
                )
                if not stream and response.status_code in accepted:
                    try:
                        self._read_body(method, url, response)
                    except BaseException:
                        response.close()  # a broken or refused body: give the connection back
                        raise
            except requests.exceptions.SSLError as exc:
                raise errors.FatalNetworkError(
                    f"{self._where(method, url)}: TLS failed ({_first_line(exc)}); if the site uses its own "
                    "CA, set [sites.source.tls] ca_bundle"
                ) from None
            except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
                raise errors.FatalNetworkError(
                    f"{self._where(method, url)}: not a usable URL ({exc.__class__.__name__})"
                ) from None
            except (
                requests.exceptions.ConnectionError,
                requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
            ) as exc:
                failure: errors.NetworkError = errors.TemporaryNetworkError(
                    f"{self._where(method, url)}: {_connection_problem(exc)}"
                )
                retry_after = None
            except requests.exceptions.TooManyRedirects:
                # A gateway or login page sending the client round in circles needs a person.
                raise errors.FatalNetworkError(
                    f"{self._where(method, url)}: the server keeps redirecting (more than "
                    f"{self.session.max_redirects} times); check base_url and any gateway or login "
                    "redirect in front of the FHIR server"
                ) from None
            except requests.exceptions.RequestException as exc:
                # Whatever else requests raises (a redirect to a non-HTTP URL, a malformed header)
                # is the site's answer, not our bug: explained, exit 5, never a traceback.
                raise errors.FatalNetworkError(
                    f"{self._where(method, url)}: the request failed ({exc.__class__.__name__}: "
                    f"{_first_line(exc)})"
                ) from None
            else:
                RESPONSES.labels(site=self.site, status=str(response.status_code)).inc()
                if response.status_code in accepted:
                    return response
                if (
                    response.status_code == 401
                    and authenticate
                    and not reauthenticated
                    and self.auth.refresh(self)
                ):
                    # An expired or revoked token is routine: one fresh one, not counted as a try.
                    response.close()
                    reauthenticated, tries = True, tries - 1
                    continue
                failure = self._failure(method, url, response, sensitive)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                response.close()
            if isinstance(failure, errors.FatalNetworkError):
                raise failure
            if tries >= self.retry.attempts:
                raise errors.TemporaryNetworkError(
                    f"{failure} (gave up after {tries} tries over {waited:.0f} s; the next pass tries again)",
                    failure.status,
                )
            delay = self.retry.delay(tries, retry_after, self.rng)
            if waited + delay > self.retry.max_wait:
                raise errors.TemporaryNetworkError(
                    f"{failure} (gave up: waiting {delay:.0f} s more would pass the "
                    f"{self.retry.max_wait:.0f} s limit; the next pass tries again)",
                    failure.status,
                )
            log.warning(
                "site server request failed, retrying",
                extra={
                    "site": self.site,
                    "url": redact_url(url),
                    "status": failure.status,
                    "try": tries,
                    "delay_seconds": round(delay, 1),
                },
            )
            self.sleep(delay)
            waited += delay

    def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        sensitive: Iterable[str] = (),
        authenticate: bool = True,
    ) -> tuple[dict[str, Any], requests.Response]:
        """GET a JSON object (a FHIR resource); a body that is not one is a ``SourceError``."""
        all_headers = {"Accept": "application/fhir+json", **(headers or {})}
        response = self.request(
            "GET", url, params=params, headers=all_headers, sensitive=sensitive, authenticate=authenticate
        )
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise errors.SourceError(
                f"{self._where('GET', response.url)}: the answer is not valid JSON ({exc.msg} at "
                f"character {exc.pos}); nothing from it was stored"
            ) from None
        if not isinstance(body, dict):
            raise errors.SourceError(
                f"{self._where('GET', response.url)}: the answer is JSON but not a FHIR resource; "
                "nothing from it was stored"
            )
        return body, response

    def close(self) -> None:
        self.session.close()

    def _too_large(self, method: str, url: str, size: str, limit: int, setting: str) -> errors.SourceError:
        """The error for an answer over a size limit: where, how large, which setting; never the content."""
        return errors.SourceError(
            f"{self._where(method, url)}: the answer is {size}, over the limit of {limit:,} bytes "
            f"([sites.source] {setting}); nothing from it was stored. Ask the site why, or raise "
            f"{setting} (a search also answers less with a smaller page_size)"
        )

    def _read_body(self, method: str, url: str, response: requests.Response) -> None:
        """Read the body into ``response.content``, at most ``max_body_bytes`` of it."""
        limit = self.max_body_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            response.close()
            raise self._too_large(method, url, f"{int(declared):,} bytes", limit, "max_response_bytes")
        body = bytearray()
        for chunk in response.iter_content(chunk_size=READ_CHUNK_BYTES):
            body += chunk
            if len(body) > limit:
                response.close()
                raise self._too_large(method, url, f"more than {limit:,} bytes", limit, "max_response_bytes")
        response._content = bytes(body)  # what .content answers from now on

    # -------------------------------------------------------------- helpers

    def _where(self, method: str, url: str) -> str:
        return f"site {self.site}: {method} {redact_url(url)}"

    def _failure(
        self, method: str, url: str, response: requests.Response, sensitive: tuple[str, ...]
    ) -> errors.NetworkError:
        status = response.status_code
        message = _body_message(response)
        text = f"{self._where(method, url)} answered {status} {response.reason or ''}".rstrip()
        if message:
            text += f": {scrub(message, sensitive)}"
        if status in TEMPORARY_STATUSES:
            return errors.TemporaryNetworkError(text, status)
        fix = FIXES.get(status)
        return errors.FatalNetworkError(f"{text}; {fix}" if fix else text, status)


def _pooled_session() -> requests.Session:
    """A session that keeps connections open (one TLS handshake per pass, not per page).

    Retries are ours (with Retry-After and the wait cap), so urllib3's own are off.
    """
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _body_message(response: requests.Response) -> str | None:
    """What the server said about the failure, in plain words, at most a few hundred characters."""
    content = read_prefix(response, ERROR_BODY_BYTES)  # error bodies are small; a huge one is cut
    if not content:
        return None
    try:
        text = outcome_text(orjson.loads(content))
    except orjson.JSONDecodeError:
        text = None
    if text is None:
        content_type = response.headers.get("Content-Type", "")
        if "html" in content_type:
            return "(an HTML error page)"
        text = content.decode("utf-8", "replace").strip()
    return " ".join(text.split())[:300] or None


def read_prefix(response: requests.Response, limit: int) -> bytes:
    """At most the first ``limit`` bytes of the body (what is left of it, on a streamed response)."""
    content = bytearray()
    try:
        for chunk in response.iter_content(chunk_size=min(limit, READ_CHUNK_BYTES)):
            content += chunk
            if len(content) >= limit:
                break
    except (requests.exceptions.RequestException, OSError):
        pass  # a broken or consumed stream: what arrived is all there is to say
    return bytes(content[:limit])


def _connection_problem(exc: requests.exceptions.RequestException) -> str:
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "could not connect in time (check the address and firewall)"
    if isinstance(exc, requests.exceptions.Timeout):
        return "the server did not answer in time (timeout_seconds)"
    text = str(exc)
    # urllib3 buries the cause in a long repr; name the usual ones in plain words.
    for marker, meaning in (
        (
            "Connection refused",
            "connection refused: is the server up, and are host and port in base_url right?",
        ),
        ("Name or service not known", "host name not found: check base_url"),
        ("nodename nor servname", "host name not found: check base_url"),
        ("Temporary failure in name resolution", "host name could not be resolved (DNS)"),
        ("Connection reset", "the server dropped the connection"),
        ("RemoteDisconnected", "the server closed the connection without answering"),
        ("IncompleteRead", "the connection broke off in the middle of the answer"),
        ("No route to host", "no route to the host: check the network path and firewall"),
        ("Network is unreachable", "network unreachable: check the network path and firewall"),
    ):
        if marker in text:
            return f"connection failed: {meaning}"
    return f"connection failed ({_first_line(exc)})"


# urllib3 names the request's path and query in its messages ("Max retries exceeded with
# url: /fhir/Patient?identifier=...%7CMRN (Caused by ...)").
_URL_IN_MESSAGE = re.compile(r"(with url: )(\S+)")


def _first_line(exc: BaseException) -> str:
    """The exception's first line, with any URL in it redacted like every URL we show."""
    text = (str(exc).splitlines() or [exc.__class__.__name__])[0]
    return _URL_IN_MESSAGE.sub(lambda m: m.group(1) + redact_url(m.group(2)), text)[:300]
