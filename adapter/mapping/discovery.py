"""The catalog facing a site's codes: which to ask the source for, and what it makes of those found.

The source stage (``adapter.fhir``) does not know the catalog.  A sync's
source is told what to search for by ``source_wanted``: the codes the
catalog maps to Observation concepts, in every spelling of their code
systems.  ``trial-adapter discover`` reads a site without that filter
(``adapter.fhir.discover`` counts the codes and units it sends), and
``judge`` sorts what it found into mapped, ignored, outside the protocol
(standard codes the trial does not use, ``triage``) and unmapped, the
unmapped first: those are what a data manager writes mapping fixes for
(docs/sources.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapter.fhir.wanted import Wanted
from adapter.mapping import catalog as catalog_mod
from adapter.mapping import triage
from adapter.mapping.facts import KINDS_FOR_RESOURCE_TYPE

if TYPE_CHECKING:
    from adapter.fhir.discover import CodeCount, Discovery

STATUS_ORDER = {"unmapped": 0, "outside": 1, "ignored": 2, "mapped": 3}


def source_wanted(catalog: catalog_mod.Catalog) -> Wanted:
    """The Observation codes the catalog maps, each in every spelling of its code system.

    A site may send a code system under an alias (an OID instead of the URI);
    the catalog knows the aliases, so the search asks for those spellings too.
    MedicationAdministrations and Procedures are not named: they are read whole.
    """
    spellings: dict[str, list[str]] = {}
    for alias, canonical in catalog.system_aliases.items():
        spellings.setdefault(canonical, []).append(alias)
    observation_kinds = KINDS_FOR_RESOURCE_TYPE["Observation"]
    codes = frozenset(
        (spelling, code)
        for (system, code), concept_id in catalog.codes.items()
        if catalog.concepts[concept_id].kind in observation_kinds
        for spelling in (system, *spellings.get(system, ()))
    )
    return Wanted({"Observation": codes})


@dataclass(frozen=True)
class CodeUse:
    """One (resource type, code, unit) the site sends, how often, and what the catalog makes of it."""

    resource_type: str
    system: str
    code: str
    display: str
    unit: str
    count: int
    status: str  # "mapped" | "ignored" | "outside" | "unmapped"
    concept: str | None


@dataclass(frozen=True)
class SiteCodes:
    """A site's discovery with the catalog's verdict on each code, unmapped first."""

    site: str
    patients_found: int
    resources_read: int
    codes: list[CodeUse]

    @property
    def unmapped(self) -> list[CodeUse]:
        return [c for c in self.codes if c.status == "unmapped"]


def judge(found: Discovery, catalog: catalog_mod.Catalog) -> SiteCodes:
    """What the catalog makes of each code: mapped (to which concept), ignored, outside or unmapped."""
    codes = [_judged(use, catalog) for use in found.codes]
    codes.sort(key=lambda c: (STATUS_ORDER[c.status], c.resource_type, -c.count, c.system, c.code, c.unit))
    return SiteCodes(found.site, found.patients_found, found.resources_read, codes)


def _judged(use: CodeCount, catalog: catalog_mod.Catalog) -> CodeUse:
    concept = catalog.concept_for(use.system, use.code) if use.code else None
    ignored = concept is None and catalog.is_ignored(use.system, use.code)
    if concept:
        status = "mapped"
    elif ignored:
        status = "ignored"
    elif use.code and triage.outside_protocol(catalog, [use], None) is not None:
        status = "outside"
    else:
        status = "unmapped"
    return CodeUse(
        use.resource_type,
        use.system,
        use.code,
        use.display,
        use.unit,
        use.count,
        status,
        concept.id if concept else None,
    )
