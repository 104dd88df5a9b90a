"""Runs one site's probes in order, each guarded, and sorts their rows for the check table.

The category probe runs first (the data probes must not mistake a missing
category for a quirk), the roster probe before everything that needs
patients; a probe that cannot run (a network error, the time limit) is a
warning row, never a crash.  The rows come back in a fixed order, scrubbed
of every identifier value and patient id the probes met.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from adapter import errors
from adapter import roster as roster_mod
from adapter.fhir import http
from adapter.fhir import settings as fhir_settings
from adapter.fhir.check_row import CheckRow
from adapter.fhir.probe import paging, parameters, patients
from adapter.fhir.probe.base import (
    BUDGET_SECONDS,
    ITEM_CATEGORY,
    ITEM_COUNT,
    ITEM_FIT,
    ITEM_IDENTIFIERS,
    ITEM_LAST_UPDATED,
    ITEM_NEXT_LINKS,
    ITEM_PATIENTS,
    ITEM_ROSTER,
    ITEM_STRICT,
    OutOfTime,
    Prober,
    bounded,
)
from adapter.fhir.wanted import Wanted
from adapter.net import messages

Probe = Callable[[Prober], CheckRow | None]
# Category first: the data probes must not mistake a missing category for a quirk.
WITH_PATIENTS: list[tuple[str, Probe]] = [
    (ITEM_CATEGORY, parameters.category),
    (ITEM_IDENTIFIERS, patients.identifier_or_list),
    (ITEM_PATIENTS, patients.patient_or_list),
    (ITEM_LAST_UPDATED, paging.last_updated),
    (ITEM_COUNT, paging.count),
    (ITEM_NEXT_LINKS, paging.next_links),
]
ROW_ORDER = [
    ITEM_ROSTER,
    ITEM_IDENTIFIERS,
    ITEM_PATIENTS,
    ITEM_LAST_UPDATED,
    ITEM_COUNT,
    ITEM_NEXT_LINKS,
    ITEM_CATEGORY,
    ITEM_STRICT,
    ITEM_FIT,
]


def probe_server(
    site: str,
    server: fhir_settings.RestSource,
    client: http.FhirClient,
    *,
    roster: roster_mod.Roster,
    wanted: Wanted,
    budget_seconds: float = BUDGET_SECONDS,
) -> list[CheckRow]:
    """The behaviour rows for one ``fhir-rest`` site; each request bounded, all within ``budget_seconds``.

    ``wanted`` holds the Observation codes the sync would search for (the
    catalog's, ``adapter.mapping.discovery.source_wanted``).
    """
    prober = Prober(site, server, client, roster, wanted, budget_seconds)
    with bounded(client):
        return run(prober)


def run(prober: Prober) -> list[CheckRow]:
    rows: list[CheckRow] = []
    roster_row = _guard(prober, ITEM_ROSTER, patients.find_patients)
    if roster_row is not None:
        rows.append(roster_row)
    steps = WITH_PATIENTS if prober.found else []
    for item, step in [*steps, (ITEM_STRICT, parameters.strict)]:
        row = _guard(prober, item, step)
        if row is not None:
            rows.append(row)
    if prober.found:
        rows.append(parameters.fit(prober))
    rows.sort(key=lambda row: ROW_ORDER.index(row.item))
    return [dataclasses.replace(row, detail=messages.scrub(row.detail, prober.sensitive)) for row in rows]


def _guard(prober: Prober, item: str, step: Probe) -> CheckRow | None:
    """Run one probe; a failure to run it is a warning row, never a crash."""
    try:
        return step(prober)
    except OutOfTime:
        return CheckRow(item, True, f"not run: the probes' time limit ({prober.budget:.0f} s) ran out", True)
    except errors.AdapterError as exc:
        return CheckRow(item, True, f"could not run: {exc}", True)
