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


def make_source(
    site: SiteConfig,
    *,
    catalog: catalog_mod.Catalog | None = None,
    roster: roster_mod.Roster | None = None,
) -> Source:
    """The source for one site; ``catalog`` and ``roster`` spare a REST source loading them again."""
    config = site.source
    if isinstance(config, fhir_settings.RestSource):
        return rest.RestSearchSource(site.id, config, roster_path=site.roster, roster=roster, catalog=catalog)
    if isinstance(config, fhir_settings.BulkSource):
        return bulk_source.BulkExportSource(site.id, config)
    return NdjsonFolderSource(config.path)
