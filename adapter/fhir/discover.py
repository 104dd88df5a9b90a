"""Which codes and units a site actually sends for its roster patients (``trial-adapter discover``).

Before go-live, and weekly after, a data manager needs to see the local
codes the catalog does not know yet, with how often each occurs, so the
site's mapping overrides can be written (docs/sources.md).  Unlike a sync,
discovery reads Observations *without* the catalog's code filter (that is the
point), stores nothing, and reports only codes, displays, units and counts,
never a patient or a value.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapter import roster as roster_mod
from adapter.config import SiteConfig
from adapter.fhir import bulk, bulk_source, rest
from adapter.fhir import settings as fhir_settings
from adapter.fhir.ndjson import NdjsonFolderSource, SourceLine
from adapter.fhir.source import Source
from adapter.mapping import catalog as catalog_mod

DISCOVERED_TYPES = ("Observation", "MedicationAdministration", "Procedure")


@dataclass(frozen=True)
class CodeUse:
    """One (resource type, code, unit) the site sends, how often, and what the catalog makes of it."""

    resource_type: str
    system: str
    code: str
    display: str
    unit: str
    count: int
    status: str  # "mapped" | "ignored" | "unmapped"
    concept: str | None


@dataclass
class Discovery:
    site: str
    patients_found: int = 0
    resources_read: int = 0
    codes: list[CodeUse] = field(default_factory=list)

    @property
    def unmapped(self) -> list[CodeUse]:
        return [c for c in self.codes if c.status == "unmapped"]


def discover(
    site: str,
    source: Source,
    roster: roster_mod.Roster,
    catalog: catalog_mod.Catalog,
    resource_types: Iterable[str] = DISCOVERED_TYPES,
) -> Discovery:
    """Tally the codes and units of every resource of the roster's patients in ``source``."""
    result = Discovery(site=site)
    patient_refs = set()
    for line in source.patients():
        if isinstance(line, SourceLine):
            if roster.subject_for_identifiers(roster_mod.patient_identifiers(line.resource)):
                patient_refs.add(f"Patient/{line.resource['id']}")
    result.patients_found = len(patient_refs)
    counts: Counter[tuple[str, str, str, str]] = Counter()
    displays: dict[tuple[str, str, str, str], str] = {}
    for resource_type in resource_types:
        pages = source.pages(resource_type, patient_refs=sorted(patient_refs), since=None, resume=None)
        for page in pages:
            for line in page.lines:
                if not isinstance(line, SourceLine) or bulk.subject_ref(line.resource) not in patient_refs:
                    continue
                result.resources_read += 1
                unit = _unit(line.resource)
                for system, code, display in _codes(line.resource):
                    key = (resource_type, system, code, unit)
                    counts[key] += 1
                    displays.setdefault(key, display)
    for key, count in counts.items():
        resource_type, system, code, unit = key
        concept = catalog.concept_for(system, code) if code else None
        status = "mapped" if concept else ("ignored" if catalog.is_ignored(system, code) else "unmapped")
        result.codes.append(
            CodeUse(
                resource_type,
                system,
                code,
                displays[key],
                unit,
                count,
                status,
                concept.id if concept else None,
            )
        )
    order = {"unmapped": 0, "ignored": 1, "mapped": 2}
    result.codes.sort(key=lambda c: (order[c.status], c.resource_type, -c.count, c.system, c.code, c.unit))
    return result


def discovery_source(
    site: SiteConfig, catalog: catalog_mod.Catalog, roster: roster_mod.Roster, work: Path
) -> Source:
    """A source that reads everything of the roster's patients, without the sync's code filter.

    A Bulk site exports into ``work`` so the sync's own export bookkeeping stays untouched.
    """
    config = site.source
    if isinstance(config, fhir_settings.RestSource):
        return rest.RestSearchSource(
            site.id, config, roster=roster, catalog=catalog, filter_observations=False
        )
    if isinstance(config, fhir_settings.BulkSource):
        return bulk_source.BulkExportSource(site.id, config.model_copy(update={"work_dir": work}))
    return NdjsonFolderSource(config.path, max_resource_bytes=config.max_resource_bytes)


def discover_site(site: SiteConfig, catalog: catalog_mod.Catalog, roster: roster_mod.Roster) -> Discovery:
    """Discovery for one configured site, whatever its source kind."""
    with tempfile.TemporaryDirectory(prefix="trial-adapter-discover-") as work:
        return discover(site.id, discovery_source(site, catalog, roster, Path(work)), roster, catalog)


def _codes(resource: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(system, code, display) of the resource's main code; one empty code for text-only ones."""
    kind = resource.get("resourceType")
    codeable: Any = resource.get("code")
    if kind == "MedicationAdministration":
        codeable = resource.get("medicationCodeableConcept")
        reference = (resource.get("medicationReference") or {}).get("reference", "")
        if codeable is None and isinstance(reference, str) and reference.startswith("#"):
            for contained in resource.get("contained") or []:
                if isinstance(contained, dict) and contained.get("id") == reference[1:]:
                    codeable = contained.get("code")
    if not isinstance(codeable, dict):
        yield "", "", "(no code)"
        return
    codings = [c for c in codeable.get("coding") or [] if isinstance(c, dict) and c.get("code")]
    if not codings:
        yield "", "", f"(text only) {str(codeable.get('text') or '')[:60]}".strip()
    for coding in codings:
        yield str(coding.get("system") or ""), str(coding["code"]), str(coding.get("display") or "")[:80]


def _unit(resource: dict[str, Any]) -> str:
    quantity = resource.get("valueQuantity")
    if resource.get("resourceType") == "MedicationAdministration":
        dosage = resource.get("dosage")
        quantity = dosage.get("dose") if isinstance(dosage, dict) else None
    if not isinstance(quantity, dict):
        return ""
    return str(quantity.get("unit") or quantity.get("code") or "(no unit)")
