"""The embedded default: a config for the bundled demo sites.

``trial-adapter demo`` needs no server and no config file: the two bundled
synthetic sites (NDJSON folders with rosters) are synced into a SQLite state
file and a file trial repository under one work folder.  The config is also
written there as ``trial-adapter.toml``, so ``issues``, ``coverage``, ``check``
and the rest can be tried on the demo with ``-c <workdir>/trial-adapter.toml``.  The demo's HMAC
secret is created there on first use, like a site would with ``keygen``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adapter import config as config_mod
from adapter import paths, privacy

CONFIG_NAME = "trial-adapter.toml"
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
    config_file = workdir / CONFIG_NAME
    config_file.write_text(_as_toml(raw), encoding="utf-8")
    return config_mod.config_from_dict(raw, base_dir=workdir, source=config_file)


def _as_toml(raw: dict[str, Any]) -> str:
    """The demo config as a TOML file, so every other command can be tried on it.

    Only the shapes this config uses: tables of strings and one array of tables.
    """
    lines = ["# Written by `trial-adapter demo`: the embedded default as a config file.", ""]

    def table(name: str, values: dict[str, Any], array: bool = False) -> None:
        lines.append(f"[[{name}]]" if array else f"[{name}]")
        nested = {k: v for k, v in values.items() if isinstance(v, dict)}
        for key, value in values.items():
            if not isinstance(value, dict):
                lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
        lines.append("")
        for key, value in nested.items():
            table(f"{name}.{key}", value)

    for name, value in raw.items():
        for item in value if isinstance(value, list) else [value]:
            table(name, item, array=isinstance(value, list))
    return "\n".join(lines)
