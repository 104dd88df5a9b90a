"""Site config -> data source: the ``[sites.source]`` kind picks the reader."""

from __future__ import annotations

from adapter.config import SiteConfig
from adapter.fhir.ndjson import NdjsonFolderSource
from adapter.fhir.source import Source


def make_source(site: SiteConfig) -> Source:
    """The source for one site (``ndjson`` folder; REST and Bulk Data arrive with issue 3)."""
    return NdjsonFolderSource(site.source.path)
