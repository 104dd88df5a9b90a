"""What a pass for one site loads from files before it touches the source or the state.

``SiteSetup.load`` reads the site's catalog (with its overrides), protocol
rules, roster and pseudonymisation secret once, so every file error surfaces
before any site is synced, and the job, the service and the CLI's re-map all
start a pass from the same object.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapter import config as config_mod
from adapter import errors, privacy, roster
from adapter.fhir import factory as source_factory
from adapter.fhir.source import Source
from adapter.mapping import catalog as catalog_mod
from adapter.mapping import discovery
from adapter.protocol import rules as rules_mod


@dataclass(frozen=True)
class SiteSetup:
    """Everything loaded from files that a pass for one site needs."""

    site: config_mod.SiteConfig
    study: str
    catalog: catalog_mod.Catalog
    rules: rules_mod.ProtocolRules
    roster: roster.Roster
    secret: bytes
    date_shift_days: int = 0
    max_retraction_share: float = 0.05
    resources_per_commit: int = 2000

    @classmethod
    def load(cls, config: config_mod.Config, site: config_mod.SiteConfig) -> SiteSetup:
        try:
            rules = rules_mod.load_rules(config.study.mappings, site.id)
        except rules_mod.RulesError as exc:
            raise errors.MappingError(str(exc)) from exc
        return cls(
            site=site,
            study=config.study.id,
            catalog=catalog_mod.load_catalog(config.study.mappings, site.id, config.overrides_dir()),
            rules=rules,
            roster=roster.load_roster(site.roster),
            secret=privacy.load_secret(config.privacy),
            date_shift_days=config.privacy.date_shift_days,
            max_retraction_share=config.sync.max_retraction_share,
            resources_per_commit=config.sync.resources_per_commit,
        )

    def make_source(self) -> Source:
        """The site's source, reading the roster's patients and asking for the catalog's codes.

        The one place a site's config, roster and catalog become a source: the
        source stage gets plain values (``adapter.fhir.factory``), never the catalog.
        """
        return source_factory.make_source(
            self.site.id, self.site.source, roster=self.roster, wanted=discovery.source_wanted(self.catalog)
        )
