"""The NDJSON folder source: Bulk-Data-shaped files, one resource per line.

This is the embedded default (the bundled demo site) and the shape a Bulk
Data export lands in, so it follows the Bulk Data file naming
(https://hl7.org/fhir/uv/bulkdata/export.html#file-request): files named
``<ResourceType>.ndjson`` or ``<ResourceType>.<anything>.ndjson``.  Lines are
streamed (constant memory).  A line that is not JSON or not a resource is
yielded as a ``BadLine`` so the sync can raise an issue for it instead of
stopping or silently skipping it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from adapter import errors
from adapter.fhir.medications import MedicationResolver

RESOURCE_ORDER = ("Patient", "Observation", "MedicationAdministration", "Procedure")


@dataclass(frozen=True)
class SourceLine:
    resource_type: str
    resource: dict[str, Any]
    location: str  # "Observation.ndjson:12", for messages (never resource content)


@dataclass(frozen=True)
class BadLine:
    resource_type: str
    location: str
    problem: str


def files_for(folder: Path, resource_type: str) -> list[Path]:
    """The files holding ``resource_type``, in a stable order."""
    if not folder.is_dir():
        raise errors.SourceError(
            f"source folder {folder} does not exist; check [[sites]] source.path in the config"
        )
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.name.split(".")[0] == resource_type and p.suffix == ".ndjson"
    )


def read_resources(folder: Path, resource_type: str) -> Iterator[SourceLine | BadLine]:
    """Stream every resource of one type from the folder."""
    for path in files_for(folder, resource_type):
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                location = f"{path.name}:{number}"
                try:
                    resource = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield BadLine(resource_type, location, f"not valid JSON ({exc.msg})")
                    continue
                if not isinstance(resource, dict):
                    yield BadLine(resource_type, location, "line is JSON but not an object")
                elif resource.get("resourceType") != resource_type:
                    yield BadLine(
                        resource_type,
                        location,
                        f"resourceType is {str(resource.get('resourceType'))[:40]!r}, not {resource_type}",
                    )
                elif not isinstance(resource.get("id"), str) or not resource["id"]:
                    yield BadLine(resource_type, location, "resource has no id")
                else:
                    yield SourceLine(resource_type, resource, location)


def count_lines(folder: Path, resource_types: tuple[str, ...] = RESOURCE_ORDER) -> int:
    """Total non-empty lines, for a progress bar's total."""
    total = 0
    for resource_type in resource_types:
        for path in files_for(folder, resource_type):
            with path.open("rb") as handle:
                total += sum(1 for line in handle if line.strip())
    return total


class NdjsonFolderSource:
    """A folder snapshot: every pass reads everything (dedupe makes it cheap).

    ``since`` and ``resume`` are ignored: the folder has no change index, and
    skipping lines would make unseen resources look deleted.
    """

    complete_listing = True

    def __init__(self, folder: Path, page_size: int = 500) -> None:
        self.folder = folder
        self.page_size = page_size

    def patients(self) -> Iterator[SourceLine | BadLine]:
        return read_resources(self.folder, "Patient")

    def pages(self, resource_type: str, **_ignored: object) -> Iterator[Any]:
        from adapter.fhir.source import Page

        medications = self._medications() if resource_type == "MedicationAdministration" else None
        page: list[SourceLine | BadLine] = []
        for line in read_resources(self.folder, resource_type):
            page.append(line)
            if len(page) >= self.page_size:
                yield Page(lines=_inlined(page, medications))
                page = []
        if page:
            yield Page(lines=_inlined(page, medications))

    def _medications(self) -> MedicationResolver:
        """The folder's Medication files, which administrations may reference instead of a code."""
        resolver = MedicationResolver()
        for line in read_resources(self.folder, "Medication"):
            if isinstance(line, SourceLine):
                resolver.add(line.resource)
        return resolver

    def expected_total(self) -> int | None:
        return count_lines(self.folder)


def _inlined(
    page: list[SourceLine | BadLine], medications: MedicationResolver | None
) -> list[SourceLine | BadLine]:
    """The page, its administrations carrying the Medications they reference (medications.py)."""
    if medications is not None:
        medications.inline([line.resource for line in page if isinstance(line, SourceLine)])
    return page
