"""Site config -> data source: the ``[sites.source]`` kind picks the reader.

``ndjson`` reads a folder, ``fhir-rest`` the site's search API, ``fhir-bulk``
its Bulk Data export.  Building a source is cheap and offline; the network
and the files are touched on first use.
"""

from __future__ import annotations

from adapter import roster as roster_mod
from adapter.config import SiteConfig
from adapter.fhir import bulk_source, rest
from adapter.fhir import settings as fhir_settings
from adapter.fhir.ndjson import NdjsonFolderSource
from adapter.fhir.source import Source
from adapter.mapping import catalog as catalog_mod


def make_source(site: SiteConfig, *, catalog: catalog_mod.Catalog, roster: roster_mod.Roster) -> Source:
    """The source for one site, reading with the caller's ``catalog`` and ``roster``.

    A REST source searches the roster's patients and the catalog's mapped
    codes.  The caller (the sync's ``SiteSetup``) has loaded and checked both
    already, so they are passed in rather than loaded here again: one load
    per pass, and the codes a pass searches for are the codes it maps with.
    """
    config = site.source
    if isinstance(config, fhir_settings.RestSource):
        return rest.RestSearchSource(site.id, config, roster=roster, catalog=catalog)
    if isinstance(config, fhir_settings.BulkSource):
        return bulk_source.BulkExportSource(site.id, config)
    return NdjsonFolderSource(config.path, max_resource_bytes=config.max_resource_bytes)
