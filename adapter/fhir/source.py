"""The one interface every site data source implements, and the lines and pages it yields.

The sync asks a source for the site's patients, then for pages of each
resource type.  Every kind of source yields the same lines: a ``SourceLine``
holds one resource, a ``BadLine`` one that could not be read (not JSON, too
large, ...), so the sync raises an issue for it instead of stopping.

Pages make the unit of commit: the sync stores a page's results and the
page's ``cursor`` in one transaction, several pages joined into one
(``adapter.sync.batches``), so after a crash it resumes from the last
committed page (docs/design.md §2).  ``watermark`` is the time the
source vouches for: once every page of a resource type is committed, the
sync stores it, and the next incremental pass asks only for resources
changed after it (minus an overlap for clock skew).

A page may also carry ``deleted``: ``Type/id`` of resources the source knows
were deleted at the site (a type's ``_history``, a Bulk export's ``deleted``
files).  The sync retires them in the page's transaction, after its lines,
so a crash before the commit reads them again, and retiring one twice
changes nothing.  A source reports all of a type's deletions of a pass on
one page, so the retraction guard weighs them together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


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
    # The resource it was, when the source could tell without handing it over (a search
    # entry over the size limit): the sync then raises the issue on the resource itself.
    ref: str | None = None
    patient_ref: str | None = None


@dataclass(frozen=True)
class Page:
    lines: list[SourceLine | BadLine] = field(default_factory=list)
    cursor: str | None = None  # opaque: where to resume after this page
    watermark: dt.datetime | None = None
    deleted: list[str] = field(default_factory=list)  # "Type/id" deleted at the site (see above)


class Source(Protocol):
    """A site's FHIR data, page by page."""

    @property
    def complete_listing(self) -> bool:
        """True when the pass just read listed every resource the site has (a snapshot).

        A resource missing from a complete pass was deleted at the site.  The
        sync reads this after the pass, so a source may answer per pass (a REST
        source: only when no type was read incrementally or resumed).
        """
        ...

    def patients(self) -> Iterator[SourceLine | BadLine]:
        """The site's Patient resources that may be on the roster."""
        ...

    def pages(
        self,
        resource_type: str,
        *,
        patient_refs: Sequence[str],
        since: dt.datetime | None,
        resume: str | None,
    ) -> Iterator[Page]:
        """Pages of ``resource_type`` for these patients, changed after ``since``."""
        ...

    def expected_total(self) -> int | None:
        """How many resources a pass will read, when cheap to know (progress bars)."""
        ...
