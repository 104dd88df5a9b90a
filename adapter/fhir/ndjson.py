"""The NDJSON folder source: Bulk-Data-shaped files, one resource per line.

This is the embedded default (the bundled demo site) and the shape a Bulk
Data export lands in, so it follows the Bulk Data file naming
(https://hl7.org/fhir/uv/bulkdata/export.html#file-request): files named
``<ResourceType>.ndjson`` or ``<ResourceType>.<anything>.ndjson``.  Lines are
streamed (constant memory).  A line that is not JSON or not a resource is
yielded as a ``BadLine`` so the sync can raise an issue for it instead of
stopping or silently skipping it.

So is a line longer than the source's ``max_resource_bytes``: it is read in
chunks of at most that size and skipped to its end, never held whole, so a
file with one 50 MB (or 5 GB) line costs no more memory than a normal one.
Its issue names the file, the line and the size, never the content.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import orjson

from adapter import errors
from adapter.fhir import settings as fhir_settings
from adapter.fhir.medications import MedicationResolver
from adapter.fhir.source import BadLine, Page, Source, SourceLine

RESOURCE_ORDER = ("Patient", "Observation", "MedicationAdministration", "Procedure")
MAX_RESOURCE_BYTES = fhir_settings.MAX_RESOURCE_BYTES  # the default of [sites.source] max_resource_bytes
SKIP_CHUNK_BYTES = 1 << 16


def too_large_problem(size: int, limit: int, what: str = "the resource") -> str:
    """How an over-size line or resource is described: its size and the setting, never its content."""
    return (
        f"{what} is {size:,} bytes, over the limit of {limit:,} bytes ([sites.source] "
        "max_resource_bytes); it was not read. Ask the site why it is so large, or raise the limit"
    )


def bounded_lines(handle: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None, int]]:
    """``(line number, line or None if over limit, size)`` for each line of a binary file.

    A line is read with ``readline(limit + 2)`` (room for ``\r\n``), so at
    most about ``limit`` bytes are held; the rest of a longer line is read
    in small chunks and only counted.  Line numbers count every line, empty
    ones too, as an editor shows them.
    """
    number = 0
    while True:
        line = handle.readline(limit + 2)
        if not line:
            return
        number += 1
        size, tail = len(line), line[-2:]
        complete = line.endswith(b"\n")
        while not complete:
            rest = handle.readline(SKIP_CHUNK_BYTES)
            if not rest:
                break
            size, tail = size + len(rest), (tail + rest)[-2:]
            complete = rest.endswith(b"\n")
            line = b""  # too long: never kept
        content = size - (2 if tail == b"\r\n" else 1 if complete else 0)
        yield (number, line, content) if line and content <= limit else (number, None, content)


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


def read_resources(
    folder: Path, resource_type: str, max_bytes: int = MAX_RESOURCE_BYTES
) -> Iterator[SourceLine | BadLine]:
    """Stream every resource of one type from the folder; lines over ``max_bytes`` become ``BadLine``."""
    for path in files_for(folder, resource_type):
        with path.open("rb") as handle:
            for number, line, size in bounded_lines(handle, max_bytes):
                location = f"{path.name}:{number}"
                if line is None:
                    yield BadLine(resource_type, location, too_large_problem(size, max_bytes, "the line"))
                    continue
                if not line.strip():
                    continue
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


def count_lines(
    folder: Path, resource_types: tuple[str, ...] = RESOURCE_ORDER, max_bytes: int = MAX_RESOURCE_BYTES
) -> int:
    """Total non-empty lines, for a progress bar's total."""
    total = 0
    for resource_type in resource_types:
        for path in files_for(folder, resource_type):
            with path.open("rb") as handle:
                lines = bounded_lines(handle, max_bytes)
                total += sum(1 for _number, line, _size in lines if line is None or line.strip())
    return total


class NdjsonFolderSource:
    """A folder snapshot: every pass reads everything (dedupe makes it cheap).

    ``since`` and ``resume`` are ignored: the folder has no change index, and
    skipping lines would make unseen resources look deleted.  So is
    ``patient_refs``: the sync tells the roster patients' resources from the rest.
    """

    complete_listing = True

    def __init__(
        self, folder: Path, page_size: int = 500, max_resource_bytes: int = MAX_RESOURCE_BYTES
    ) -> None:
        self.folder = folder
        self.page_size = page_size
        self.max_resource_bytes = max_resource_bytes

    def patients(self) -> Iterator[SourceLine | BadLine]:
        return read_resources(self.folder, "Patient", self.max_resource_bytes)

    def pages(
        self,
        resource_type: str,
        *,
        patient_refs: Sequence[str],
        since: dt.datetime | None,
        resume: str | None,
    ) -> Iterator[Page]:
        del patient_refs, since, resume  # a snapshot: every pass reads every line
        medications = self._medications() if resource_type == "MedicationAdministration" else None
        page: list[SourceLine | BadLine] = []
        for line in read_resources(self.folder, resource_type, self.max_resource_bytes):
            page.append(line)
            if len(page) >= self.page_size:
                yield Page(lines=_inlined(page, medications))
                page = []
        if page:
            yield Page(lines=_inlined(page, medications))

    def _medications(self) -> MedicationResolver:
        """The folder's Medication files, which administrations may reference instead of a code."""
        resolver = MedicationResolver()
        for line in read_resources(self.folder, "Medication", self.max_resource_bytes):
            if isinstance(line, SourceLine):
                resolver.add(line.resource)
        return resolver

    def expected_total(self) -> int | None:
        return count_lines(self.folder, max_bytes=self.max_resource_bytes)


_: type[Source] = NdjsonFolderSource  # mypy checks that the folder source keeps to the interface


def _inlined(
    page: list[SourceLine | BadLine], medications: MedicationResolver | None
) -> list[SourceLine | BadLine]:
    """The page, its administrations carrying the Medications they reference (medications.py)."""
    if medications is not None:
        medications.inline([line.resource for line in page if isinstance(line, SourceLine)])
    return page
