"""A site's fix file and catalog, as the config places them.

The one place a fix turns a site id into paths: an unknown site is refused
here (a ``ConfigError`` naming the known ones) before any file is looked at.
"""

from __future__ import annotations

from pathlib import Path

from adapter import config as config_mod
from adapter.mapping import catalog as catalog_mod
from adapter.mapping import overrides


def fix_file(config: config_mod.Config, site_id: str) -> Path:
    """``<overrides>/<site>.toml``: where the site's mapping fixes are written."""
    config.site(site_id)  # an unknown site is a ConfigError naming the known ones
    return overrides.path_for(config.overrides_dir(), site_id)


def catalog(config: config_mod.Config, site_id: str) -> catalog_mod.Catalog:
    """The site's catalog as a sync would load it, fixes included, to check a fix against."""
    config.site(site_id)
    return catalog_mod.load_catalog(config.study.mappings, site_id, config.overrides_dir())
