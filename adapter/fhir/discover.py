"""Which codes and units a site actually sends for its roster patients (``trial-adapter discover``).

Before go-live, and weekly after, a data manager needs to see the local
codes the catalog does not know yet, with how often each occurs, so the
site's mapping overrides can be written (docs/sources.md).  Unlike a sync,
discovery reads Observations *without* a code filter (that is the point),
stores nothing, and reports only codes, displays, units and counts, never a
patient or a value.  This is the source's side: what the site sends.  What
the catalog makes of each code (mapped, ignored, unmapped) is
``adapter.mapping.discovery``'s; the CLI puts the two together.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapter import roster as roster_mod
from adapter.fhir import bulk, factory
from adapter.fhir.source import Source, SourceLine
from adapter.fhir.wanted import Wanted

DISCOVERED_TYPES = ("Observation", "MedicationAdministration", "Procedure")


@dataclass(frozen=True)
class CodeCount:
    """One (resource type, code, unit) the site sends, and how often."""

    resource_type: str
    system: str
    code: str
    display: str
    unit: str
    count: int


@dataclass
class Discovery:
    site: str
    patients_found: int = 0
    resources_read: int = 0
    codes: list[CodeCount] = field(default_factory=list)


def discover(
    site: str,
    source: Source,
    roster: roster_mod.Roster,
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
        result.codes.append(CodeCount(resource_type, system, code, displays[key], unit, count))
    result.codes.sort(key=lambda c: (c.resource_type, -c.count, c.system, c.code, c.unit))
    return result


def discovery_source(
    site_id: str, settings: factory.SourceSettings, roster: roster_mod.Roster, work: Path
) -> Source:
    """A source that reads everything of the roster's patients, without the sync's code filter.

    A Bulk site exports into ``work`` so the sync's own export bookkeeping stays untouched.
    """
    return factory.make_source(site_id, settings, roster=roster, wanted=Wanted.everything(), work_dir=work)


def discover_site(site_id: str, settings: factory.SourceSettings, roster: roster_mod.Roster) -> Discovery:
    """Discovery for one configured site (its ``[sites.source]`` settings), whatever its source kind."""
    with tempfile.TemporaryDirectory(prefix="trial-adapter-discover-") as work:
        return discover(site_id, discovery_source(site_id, settings, roster, Path(work)), roster)


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
