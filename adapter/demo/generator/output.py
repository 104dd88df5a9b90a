"""What the generator writes and reports: NDJSON files, planted messes, summaries.

Streaming each resource to its file as it is made keeps memory flat for
benchmark-sized sites.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import orjson

from adapter.demo.generator.vocabulary import Json

RESOURCE_TYPES = ("Patient", "Observation", "MedicationAdministration", "Procedure")


@dataclass(frozen=True)
class Mess:
    """One planted problem and the issue kind the adapter should raise for it.

    Two kinds name no issue: ``not_given`` (a dose charted as not done) and
    ``withdrawn`` (an entry the site marked entered-in-error) raise none and
    show in the subject's history (stored outcome ``not-given``, ``withdrawn``).
    """

    site: str
    kind: str
    resource: str
    note: str

    def as_json(self) -> Json:
        return {"site": self.site, "kind": self.kind, "resource": self.resource, "note": self.note}


@dataclass(frozen=True)
class SiteOutput:
    """What was written for one site: file paths and lines per file."""

    site: str
    folder: Path
    roster: Path
    files: Mapping[str, Path]
    counts: Mapping[str, int]
    roster_subjects: int
    patients_not_on_roster: int


@dataclass(frozen=True)
class GeneratedDemo:
    """The result of :func:`generate`."""

    out_dir: Path
    sites: Mapping[str, SiteOutput]
    messes_path: Path
    messes: tuple[Mess, ...]

    def __str__(self) -> str:
        """One line for the CLI: lines written per site and the number of planted messes."""
        per_site = "; ".join(
            f"{name}: " + ", ".join(f"{count} {rtype}" for rtype, count in site.counts.items())
            for name, site in self.sites.items()
        )
        return f"{per_site}; {len(self.messes)} planted messes"


class SiteFiles:
    """The four NDJSON files of one site, appended to as resources are made.

    Streaming keeps memory flat for benchmark-sized sites; orjson keeps the
    dict's insertion order, so key order is fixed by the resource builders.
    """

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.paths = {rtype: folder / f"{rtype}.ndjson" for rtype in RESOURCE_TYPES}
        self.counts = dict.fromkeys(RESOURCE_TYPES, 0)
        self._handles: dict[str, IO[bytes]] = {}
        try:
            for rtype, path in self.paths.items():
                self._handles[rtype] = path.open("wb")
        except OSError:
            self.close()
            raise

    def emit(self, resource: Json) -> None:
        rtype = resource["resourceType"]
        self._handles[rtype].write(orjson.dumps(resource) + b"\n")
        self.counts[rtype] += 1

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()

    def __enter__(self) -> SiteFiles:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
