"""Which trial repository a ``[repository]`` table names: its kind and where it is, never how to log in.

The state database records, for every outbox item it delivers, the
fingerprint of the repository that took it (``adapter.delivery.redelivery``), so a
site that switches repositories can re-send exactly what the new one lacks.
Two configs name the same repository when their kind and location agree:

- ``file``: the folder, resolved to an absolute path (symlinks followed), so
  ``repository`` and ``./repository/`` beside the config are one folder;
- ``http``, ``fhir``, ``redcap``: the URL with scheme and host in lower case,
  the scheme's default port dropped, and no user name, password or trailing
  slash (https://www.rfc-editor.org/rfc/rfc3986#section-6.2.3).

Credentials are never part of it: a rotated token, a new client certificate
or other TLS settings leave the repository what it was.  (A REDCap project
is known only by its token, so two projects on one REDCap server look like
one repository; docs/site-it.md says what to do then.)
"""

from __future__ import annotations

import hashlib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from adapter.sinks import settings as sink_settings

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class RepositoryIdentity:
    kind: str
    location: str  # the resolved folder or the normalized URL

    @property
    def fingerprint(self) -> str:
        """64 hex digits: what ``outbox.delivered_to`` stores."""
        return hashlib.sha256(f"{self.kind}\n{self.location}".encode()).hexdigest()

    def __str__(self) -> str:
        return f"{self.kind} repository {self.location}"


def of(repository: sink_settings.RepositoryConfig) -> RepositoryIdentity:
    """The identity of the repository a config names."""
    if isinstance(repository, sink_settings.FileRepository):
        return RepositoryIdentity("file", str(Path(repository.path).resolve()))
    return RepositoryIdentity(repository.kind, normalized_url(repository.url))


def normalized_url(url: str) -> str:
    """``HTTPS://Bob:pw@Trials.Example.org:443/fhir/`` -> ``https://trials.example.org/fhir``."""
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None or port == DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = parts.path.rstrip("/")
    return urllib.parse.urlunsplit((scheme, netloc, path, "", ""))
