"""What a server said, and why a connection failed, in plain words that carry no PHI.

Every network failure ends up in a log, a terminal or the outbox, so the
words are built here, once, for sources and sinks alike:

- a URL is shown with the values of identifying query parameters replaced
  (``redact_url``): patient ids and identifier values are PHI-adjacent;
- a server's explanation is read from the first 64 KiB of its error body,
  from a FHIR OperationOutcome, an OAuth error or the ``{"error": ...}`` /
  ``{"message": ...}`` / ``{"detail": ...}`` of REST APIs, and cut short;
  values the request carried can be scrubbed from it (``scrub``), because
  servers like to echo the offending parameter back;
- a connection failure is named by its usual causes (refused, DNS, timeout,
  TLS) with the setting that fixes it, and urllib3's long message, which
  holds the request's path and query, is shortened and redacted.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

import orjson
import requests

READ_CHUNK_BYTES = 1 << 16
ERROR_BODY_BYTES = 1 << 16

# Query parameters whose values are safe to show: paging and filters, never who.
SHOWN_PARAMETERS = frozenset(
    {"_count", "_offset", "_lastUpdated", "_since", "_type", "_outputFormat", "_sort", "_total",
     "_summary", "_elements", "_format", "_getpages", "_page", "category", "status"}
)  # fmt: skip

# urllib3 names the request's path and query in its messages ("Max retries exceeded with
# url: /fhir/Patient?identifier=...%7CMRN (Caused by ...)").
_URL_IN_MESSAGE = re.compile(r"(with url: )(\S+)")
_SSL_REASON = re.compile(r"\[SSL: [A-Z_]+\][^'\")]*")


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


def scrub(text: str, sensitive: Iterable[str]) -> str:
    """Remove values we sent (patient ids, identifier values) from a server's message.

    Servers like to echo the offending parameter back ("no patient MRN123");
    the echo must not carry the value into our logs.
    """
    for value in sorted({v for v in sensitive if len(v) >= 3}, key=len, reverse=True):
        text = text.replace(value, "…")
    return text


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


def body_text(body: Any) -> str | None:
    """The explanation in a JSON error body: ``outcome_text``, else a REST API's message field."""
    said = outcome_text(body)
    if said is not None or not isinstance(body, dict):
        return said
    for key in ("error", "message", "detail", "error_description"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, dict):
            return body_text(value)
    return None


def server_said(response: requests.Response) -> str | None:
    """What the server said about the failure, in plain words, at most a few hundred characters."""
    content = read_prefix(response, ERROR_BODY_BYTES)  # error bodies are small; a huge one is cut
    if not content:
        return None
    try:
        text = body_text(orjson.loads(content))
    except orjson.JSONDecodeError:
        text = None
    if text is None:
        if "html" in response.headers.get("Content-Type", ""):
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


def connection_problem(exc: requests.exceptions.RequestException, url_setting: str) -> str:
    """Why no answer came, in plain words; ``url_setting`` is the key that holds the address."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "could not connect in time (check the address and firewall)"
    if isinstance(exc, requests.exceptions.Timeout):
        return "the server did not answer in time (timeout_seconds)"
    text = str(exc)
    # urllib3 buries the cause in a long repr; name the usual ones in plain words.
    for marker, meaning in (
        (
            "Connection refused",
            f"connection refused: is the server up, and are host and port in {url_setting} right?",
        ),
        ("Name or service not known", f"host name not found: check {url_setting}"),
        ("nodename nor servname", f"host name not found: check {url_setting}"),
        ("Temporary failure in name resolution", "host name could not be resolved (DNS)"),
        ("Connection reset", "the server dropped the connection"),
        ("RemoteDisconnected", "the server closed the connection without answering"),
        ("IncompleteRead", "the connection broke off in the middle of the answer"),
        ("No route to host", "no route to the host: check the network path and firewall"),
        ("Network is unreachable", "network unreachable: check the network path and firewall"),
    ):
        if marker in text:
            return f"connection failed: {meaning}"
    return f"connection failed ({first_line(exc)})"


def tls_problem(exc: requests.exceptions.SSLError, tls_table: str) -> str:
    """A failed TLS handshake: OpenSSL's reason, and the setting for a server with its own CA."""
    reason = _SSL_REASON.search(str(exc))
    said = reason.group(0).strip() if reason else first_line(exc)
    return f"TLS failed ({said}); if the server uses its own CA, set {tls_table} ca_bundle"


def first_line(exc: BaseException) -> str:
    """The exception's first line, with any URL in it redacted like every URL we show."""
    text = (str(exc).splitlines() or [exc.__class__.__name__])[0]
    return _URL_IN_MESSAGE.sub(lambda m: m.group(1) + redact_url(m.group(2)), text)[:300]
