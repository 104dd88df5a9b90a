"""The embedded default: a config for the bundled demo sites.

``trial-adapter demo`` needs no server and no config file: the two bundled
synthetic sites (NDJSON folders with rosters) are synced into a SQLite state
file and a file trial repository under one work folder.  The demo's HMAC
secret is created there on first use, like a site would with ``keygen``.
"""

from __future__ import annotations

from pathlib import Path

from adapter import config as config_mod
from adapter import paths, privacy

SITES = {"demo-north": "America/Chicago", "demo-east": "Asia/Shanghai"}


def demo_config(workdir: Path, data_dir: Path | None = None) -> config_mod.Config:
    """A validated Config for the demo sites, with its state under ``workdir``."""
    data = (data_dir or paths.demo_data_dir()).resolve()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "site-secret.key"
    if not key.exists():
        privacy.write_secret(key)
    raw = {
        "study": {"id": "NCT06507514", "mappings": str(paths.default_mappings_dir())},
        "store": {"url": f"sqlite:///{workdir / 'state.db'}"},
        "privacy": {"hmac_key_file": str(key)},
        "sites": [
            {
                "id": site,
                "timezone": tz,
                "roster": str(data / site / "roster.csv"),
                "source": {"kind": "ndjson", "path": str(data / site)},
            }
            for site, tz in SITES.items()
        ],
        "repository": {"kind": "file", "path": str(workdir / "repository")},
    }
    return config_mod.config_from_dict(raw, base_dir=workdir)
