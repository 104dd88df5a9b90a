"""Put the Medication an administration points to inside it, so the drug's code travels with it.

Many EHRs name the drug of a MedicationAdministration by a reference to a
Medication resource (``medicationReference: {"reference": "Medication/123"}``)
rather than by a code.  The mapping engine reads only the resource in hand,
and a stored resource must be re-mappable later without the server (``remap``
after a data manager's fix), so the source resolves such references while it
reads: the Medication becomes a contained resource of the administration and
the reference points at it (``#med-123``), the FHIR way of carrying a
referenced resource along.  The original reference is kept in the contained
Medication's ``meta.source``, so where the code came from stays visible.

A reference that cannot be resolved (the Medication is gone, or the source
cannot look it up) is left as it is; the engine then raises an
``unknown_code`` issue that names it, so nothing is dropped silently.

This module only rewrites resources; looking Medications up at a server is
a search like any other and lives with the searches (``adapter.fhir.bundles``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

FetchMedications = Callable[[Sequence[str]], Iterable[dict[str, Any]]]
"""Looks up Medications by id at the source, yields the ones it found (``bundles.medication_lookup``)."""

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def medication_id(reference: str) -> str | None:
    """The id in ``Medication/<id>``, an absolute URL to it, or a versioned form; else None."""
    path = reference.split("/_history/")[0].rstrip("/")
    parts = path.split("/")
    if len(parts) >= 2 and parts[-2] == "Medication" and _ID.match(parts[-1]):
        return parts[-1]
    return None


def external_medication(resource: dict[str, Any]) -> str | None:
    """The id of the Medication an administration names by an outside reference, if it does."""
    if resource.get("resourceType") != "MedicationAdministration" or "medicationCodeableConcept" in resource:
        return None
    reference = resource.get("medicationReference")
    target = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(target, str) or target.startswith("#"):
        return None
    return medication_id(target)


class MedicationResolver:
    """Inlines referenced Medications, looking each one up at most once per source."""

    def __init__(self, fetch: FetchMedications | None = None) -> None:
        self._fetch = fetch
        self._known: dict[str, dict[str, Any]] = {}
        self._missing: set[str] = set()

    def add(self, medication: dict[str, Any]) -> None:
        """A Medication the source already has (a Medication.ndjson file, an _include'd entry)."""
        if medication.get("resourceType") == "Medication" and isinstance(medication.get("id"), str):
            self._known[medication["id"]] = medication

    def inline(self, resources: Sequence[dict[str, Any]]) -> int:
        """Resolve the outside medication references of these resources in place; how many were."""
        referring = [(resource, ident) for resource in resources if (ident := external_medication(resource))]
        pending = sorted({ident for _, ident in referring} - self._known.keys() - self._missing)
        if pending and self._fetch is not None:
            for medication in self._fetch(pending):
                self.add(medication)
            self._missing.update(ident for ident in pending if ident not in self._known)
        resolved = 0
        for resource, ident in referring:
            if ident in self._known:
                _contain(resource, self._known[ident])
                resolved += 1
        return resolved


def _contain(resource: dict[str, Any], medication: dict[str, Any]) -> None:
    """Make ``medication`` a contained resource of ``resource`` and point its reference there."""
    contained = resource.get("contained")
    if not isinstance(contained, list):
        contained = []
    taken = {c.get("id") for c in contained if isinstance(c, dict)}
    local_id = f"med-{medication['id']}"[:64]
    while local_id in taken:
        local_id = f"x{local_id}"[:64]
    inner = {k: v for k, v in medication.items() if k not in ("id", "meta", "text", "contained")}
    inner["id"] = local_id
    inner["meta"] = {"source": f"Medication/{medication['id']}"}
    resource["contained"] = [*contained, inner]
    resource["medicationReference"] = {**resource["medicationReference"], "reference": f"#{local_id}"}
