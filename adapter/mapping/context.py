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
from adapter.mapping.not_counted import NotCounted


@dataclass(frozen=True)
class SiteContext:
    """What the engine needs to know about the site it maps for."""

    site: str
    timezone: ZoneInfo
    catalog: catalog_mod.Catalog
    subjects: dict[str, str]  # "Patient/<id>" -> trial subject id


@dataclass(frozen=True)
class OutsideCode:
    """The standard code that places a resource outside the protocol, and its display."""

    code: str  # "system|code", the system canonical
    display: str


@dataclass
class MappingResult:
    facts: list[Fact] = field(default_factory=list)
    issues: list[MappingIssue] = field(default_factory=list)
    ignored: bool = False
    outside: OutsideCode | None = None  # set when the resource is outside the protocol (no issue)
    # Set when the site recorded a dose not given, a procedure not done or an
    # entry in error (``not_counted.py``): no issue, and no fact that counts.
    not_counted: NotCounted | None = None


#: A mapper: (parsed resource, "<type>/<id>", source version, site) -> result.
Mapper = Callable[[Any, str, str, SiteContext], MappingResult]


class Stop(Exception):
    """Raised inside a mapper to end it with one issue."""

    def __init__(self, issue: MappingIssue) -> None:
        self.issue = issue


class Outside(Exception):
    """Raised inside a mapper to end it without an issue: the resource is outside the protocol."""

    def __init__(self, code: OutsideCode) -> None:
        self.code = code


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
    """A fact of ``concept``; its local days are the site's calendar days of ``start`` and ``end``.

    Built without validation (``Fact.trusted``): every argument comes from
    the mappers, already of the field's type, and validating a fact cost a
    third of mapping a resource.  The two numbers are made floats here, which
    is the one coercion validation did (a score read from ``valueInteger``
    stays ``90.0``, so the stored JSON is unchanged); tests/mapping/test_lean_parity.py
    holds every mapped fact to what validation would have made of it.
    """
    value = values.get("value")
    reference_high = values.get("reference_high")
    return Fact.trusted(
        {
            "site": ctx.site,
            "subject_id": subject_id,
            "concept": concept.id,
            "kind": concept.kind,
            "unit": concept.spec.unit if value is not None else None,
            "effective_start": start,
            "effective_end": end,
            "local_date": times.local_date(start, ctx.timezone),
            "local_end_date": times.local_date(end, ctx.timezone) if end is not None else None,
            "status": status,
            "source_ref": ref,
            "source_version": source_version,
            "catalog_version": ctx.catalog.version,
            **values,
            "value": None if value is None else float(value),
            "reference_high": None if reference_high is None else float(reference_high),
        }
    )
