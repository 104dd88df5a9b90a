"""What every mapper is given, what it gives back, and how it stops with one issue.

The mapping engine (``engine.py``) hands each resource to the mapper of its
type; the mappers share these few types so that a fact or an issue looks the
same whichever resource type it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from adapter.mapping import catalog as catalog_mod
from adapter.mapping import times
from adapter.mapping.facts import Fact
from adapter.mapping.issues import IssueKind, MappingIssue


@dataclass(frozen=True)
class SiteContext:
    """What the engine needs to know about the site it maps for."""

    site: str
    timezone: ZoneInfo
    catalog: catalog_mod.Catalog
    subjects: dict[str, str]  # "Patient/<id>" -> trial subject id


@dataclass
class MappingResult:
    facts: list[Fact] = field(default_factory=list)
    issues: list[MappingIssue] = field(default_factory=list)
    ignored: bool = False


#: A mapper: (parsed resource, "<type>/<id>", source version, site) -> result.
Mapper = Callable[[Any, str, str, SiteContext], MappingResult]


class Stop(Exception):
    """Raised inside a mapper to end it with one issue."""

    def __init__(self, issue: MappingIssue) -> None:
        self.issue = issue


def issue(ctx: SiteContext, kind: IssueKind, scope: str, detail: str, **extra: Any) -> MappingIssue:
    """An issue of the site; a resource scope ("Observation/1") is also its source reference."""
    refs = extra.pop("source_refs", None)
    if refs is None and "/" in scope and not scope.startswith(("code:", "text:")):
        refs = (scope,)
    return MappingIssue(site=ctx.site, kind=kind, scope=scope, detail=detail, source_refs=refs or (), **extra)


def fact(
    ctx: SiteContext,
    *,
    subject_id: str,
    concept: catalog_mod.Concept,
    ref: str,
    source_version: str,
    status: str,
    start: Any,
    end: Any = None,
    **values: Any,
) -> Fact:
    """A fact of ``concept``; its local days are the site's calendar days of ``start`` and ``end``."""
    return Fact(
        site=ctx.site,
        subject_id=subject_id,
        concept=concept.id,
        kind=concept.kind,
        unit=concept.spec.unit if values.get("value") is not None else None,
        effective_start=start,
        effective_end=end,
        local_date=times.local_date(start, ctx.timezone),
        local_end_date=times.local_date(end, ctx.timezone) if end is not None else None,
        status=status,
        source_ref=ref,
        source_version=source_version,
        catalog_version=ctx.catalog.version,
        # Always passed: pydantic deep-copies the mutable default {} for every
        # fact that leaves it out, which cost a sixth of building one.
        **{"attributes": {}, **values},
    )
