"""The main job: sync every configured site, then drain the outbox.

The CLI's ``sync --once`` and ``demo`` call this, and so will the scheduler:
one function, so what a site IT team tests by hand is what runs unattended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from adapter import config as config_mod
from adapter import delivery
from adapter.fhir import factory as source_factory
from adapter.sinks import factory
from adapter.store import db
from adapter.sync import Progress, SiteSetup, SyncSummary, sync_site


@dataclass
class JobResult:
    syncs: list[SyncSummary]
    delivery: delivery.DrainSummary | None


def expected_lines(sites: Sequence[config_mod.SiteConfig]) -> int:
    """Source lines to read, for a progress bar."""
    return sum(source_factory.make_source(site).expected_total() or 0 for site in sites)


def run_once(
    config: config_mod.Config,
    sites: Sequence[config_mod.SiteConfig],
    *,
    full: bool = False,
    deliver: bool = True,
    progress: Progress | None = None,
) -> JobResult:
    """Sync ``sites`` (all files loaded and checked first), then deliver."""
    setups = [SiteSetup.load(config, site) for site in sites]  # fail fast, before any state changes
    sessions = db.open_store(config.store.url)
    syncs = [sync_site(setup, sessions, full=full, progress=progress) for setup in setups]
    drained = delivery.drain(sessions, factory.make_sink(config.repository)) if deliver else None
    return JobResult(syncs=syncs, delivery=drained)
