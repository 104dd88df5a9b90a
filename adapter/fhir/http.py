"""Talking HTTP to a site's FHIR server: the site's session, retries, bounded reads, plain-words errors.

A single request is sorted into *temporary* failures, retried with backoff
(``adapter.net.retry``: which ones, how long to wait, how ``Retry-After`` is
capped), and *fatal* ones, which are not; a 401 gets one re-authentication
that does not count as a retry, because an expired token is routine, not a
failure.  Every message names the site and the URL with the values of
identifying query parameters removed (``adapter.net.messages``): patient ids
and identifier values are PHI-adjacent and must not reach logs or terminals.

Nothing a server sends is read without a bound: an answer is read in chunks
up to ``max_body_bytes`` (``[sites.source] max_response_bytes``) and refused
beyond it with a ``SourceError`` that names the URL and the limit, never the
content; an error body is read only as far as its first 64 KiB.
"""

from __future__ import annotations

import logging
import random
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import orjson
import prometheus_client
import requests

from adapter import errors
from adapter.fhir import ndjson
from adapter.fhir import settings as fhir_settings
from adapter.net import messages, sessions
from adapter.net.retry import TEMPORARY_STATUSES, RetryPolicy, parse_retry_after
from adapter.net.settings import TlsSettings

log = logging.getLogger(__name__)

RESPONSES = prometheus_client.Counter(
    "trial_adapter_http_responses",
    "HTTP responses received from site FHIR servers, by site and status code.",
    ["site", "status"],
)

# The default of [sites.source] max_response_bytes: room for a page of a hundred large
# resources, or for one over max_resource_bytes, which then becomes an issue.
MAX_RESPONSE_BYTES = fhir_settings.MAX_RESPONSE_BYTES

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


class FhirClient:
    """Requests to one site's FHIR server, with the site's auth, TLS and retry settings."""

    def __init__(
        self,
        site: str,
        base_url: str,
        *,
        auth: Authorizer | None = None,
        timeout: float = 60.0,
        tls: TlsSettings | None = None,
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
        self.session = sessions.open_session(
            tls or TlsSettings(), peer="this site", tls_table="[sites.source.tls]", log_extra={"site": site}
        )
        self.requests_sent = 0  # every try of every request: what a pass costs the server

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
            self.requests_sent += 1
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
                    f"{self._where(method, url)}: {messages.tls_problem(exc, '[sites.source.tls]')}"
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
                    f"{self._where(method, url)}: {messages.connection_problem(exc, 'base_url')}"
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
                    f"{messages.first_line(exc)})"
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
                    "url": messages.redact_url(url),
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
        for chunk in response.iter_content(chunk_size=messages.READ_CHUNK_BYTES):
            body += chunk
            if len(body) > limit:
                response.close()
                raise self._too_large(method, url, f"more than {limit:,} bytes", limit, "max_response_bytes")
        response._content = bytes(body)  # what .content answers from now on

    # -------------------------------------------------------------- helpers

    def _where(self, method: str, url: str) -> str:
        return f"site {self.site}: {method} {messages.redact_url(url)}"

    def _failure(
        self, method: str, url: str, response: requests.Response, sensitive: tuple[str, ...]
    ) -> errors.NetworkError:
        status = response.status_code
        message = messages.server_said(response)
        text = f"{self._where(method, url)} answered {status} {response.reason or ''}".rstrip()
        if message:
            text += f": {messages.scrub(message, sensitive)}"
        if status in TEMPORARY_STATUSES:
            return errors.TemporaryNetworkError(text, status)
        fix = FIXES.get(status)
        return errors.FatalNetworkError(f"{text}; {fix}" if fix else text, status)
