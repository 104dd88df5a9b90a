"""Shared by the FHIR source tests: a mocked base URL, a sleep recorder, demo configs for server sources.

(A plain module, not the conftest: every test folder without ``__init__.py``
has its conftest imported as ``conftest``, so importing from it is ambiguous.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapter import config as config_mod
from adapter.demo import site as demo_site
from adapter.fhir.source import Source
from adapter.sync import SiteSetup

BASE = "https://ehr.example.org/fhir"
# Fixed so keyed hashes are comparable between runs; never a site's secret.
TEST_SECRET = "fhir-source-tests-only-secret-0123456789\n"  # noqa: S105


class Sleeps(list[float]):
    """Stands in for time.sleep: records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def demo_config(workdir: Path, sites: tuple[str, ...] = ("demo-north",)) -> config_mod.Config:
    """The bundled demo config (NDJSON folders) for some sites, state under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "site-secret.key").write_text(TEST_SECRET)
    config = demo_site.demo_config(workdir)
    return config.model_copy(update={"sites": [s for s in config.sites if s.id in sites]})


def server_config(
    workdir: Path,
    base_url: str,
    sites: tuple[str, ...] = ("demo-north",),
    *,
    resources_per_commit: int | None = None,
    **source: Any,
) -> config_mod.Config:
    """The demo config with its sites reading from a FHIR server instead of their folders."""
    demo = demo_config(workdir, sites)
    raw = demo.model_dump(mode="json", exclude={"source_file"}, exclude_defaults=True)
    if resources_per_commit is not None:
        raw["sync"] = {**raw.get("sync", {}), "resources_per_commit": resources_per_commit}
    raw["study"] = {"id": demo.study.id, "mappings": str(demo.study.mappings)}
    for site in raw["sites"]:
        site["source"] = {"kind": source.pop("kind", "fhir-rest"), "base_url": base_url, **source}
    return config_mod.config_from_dict(raw, base_dir=workdir)


def site_source(config: config_mod.Config) -> Source:
    """The first site's source as a sync builds it: with its ``SiteSetup``'s catalog and roster."""
    setup = SiteSetup.load(config, config.sites[0])
    return setup.make_source()
