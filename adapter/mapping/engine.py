"""The mapping engine: one parsed R4B resource in, facts or typed issues out.

Pure functions, no I/O: everything they need (catalog, roster lookup,
timezone) arrives in a ``SiteContext``.  The contract the rest of the
pipeline relies on (and the property tests check): every resource yields at
least one fact, or at least one issue, or is explicitly ``ignored`` because
its code is listed in the site's ``ignored_codes``, or is ``outside`` the
protocol because its standard code is none of the catalog's and does not
look like a protocol concept (``triage.py``; counted in coverage), or is
``not_counted``: a dose not given, a procedure not done or an entry the site
marked entered-in-error, which raise no issue and feed no record
(``not_counted.py``; the console's subject history shows them).  Nothing
vanishes.

Each resource type has its own mapper module (``MAPPERS``); they share the
steps in ``resolve.py`` (who and what), ``status_and_period.py`` (whether it
counts and when) and ``quantities.py`` (values in canonical units).  Order of
checks is deliberate: roster first (an off-roster patient's data must not be
looked at further), then whether the site withdrew it (entered-in-error:
nothing in it is a problem any more), then code (an unknown code is one
issue per code, not per resource), then status, time and value.
"""

from __future__ import annotations

from typing import Any

from adapter.mapping.administrations import map_administration
from adapter.mapping.context import Mapper, MappingResult, Outside, SiteContext, Stop, issue
from adapter.mapping.issues import IssueKind
from adapter.mapping.observations import map_observation
from adapter.mapping.procedures import map_procedure

__all__ = ["MAPPERS", "MappingResult", "SiteContext", "map_resource"]

#: Resource type -> its mapper; any other type is an ``invalid_resource`` issue.
MAPPERS: dict[str, Mapper] = {
    "Observation": map_observation,
    "MedicationAdministration": map_administration,
    "Procedure": map_procedure,
}


def map_resource(resource: Any, source_version: str, ctx: SiteContext) -> MappingResult:
    """Map one parsed R4B resource; see the module docstring for the contract."""
    resource_type = resource.get_resource_type()
    mapper = MAPPERS.get(resource_type)
    ref = f"{resource_type}/{resource.id}"
    if mapper is None:
        return MappingResult(
            issues=[issue(ctx, IssueKind.INVALID_RESOURCE, ref, f"{ref}: resource type is not mapped")]
        )
    try:
        return mapper(resource, ref, source_version, ctx)
    except Stop as stop:
        return MappingResult(issues=[stop.issue])
    except Outside as outside:
        return MappingResult(outside=outside.code)
