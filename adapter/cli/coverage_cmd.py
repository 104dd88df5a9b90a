"""``trial-adapter coverage``: how much of what a site sends is mapped.

The numbers are ``adapter.reconciliation.coverage``'s, the same as the
console's site page; this module prints them as tables or JSON.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from adapter.cli import common
from adapter.reconciliation import coverage as coverage_mod
from adapter.store import db

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def coverage(
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    site_id: common.SiteOption = None,
    top: Annotated[int, typer.Option("--top", help="How many unmapped codes to list.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Share of source values mapped, by resource type and concept, with the top unmapped codes.

    Standard codes outside the protocol (LOINC, SNOMED CT, RxNorm codes the
    catalog does not hold and that do not look like a protocol concept) raise
    no issue; they are listed here, one line each, and left out of "mapped %",
    as are "not counted" resources: doses not given, procedures not done and
    entries the site marked entered-in-error.
    """
    with common.reported_errors():
        config = common.load_config(config_path)
        sessions = db.open_store(config.store.url)
        for site in common.selected_sites(config, site_id):
            with sessions() as session:
                result = coverage_mod.site_coverage(session, site.id, top=top)
            if as_json:
                common.console.print_json(coverage_mod.as_json(result).decode())
                continue
            _print(result)


def _print(result: coverage_mod.Coverage) -> None:
    types = Table(title=f"Coverage: {result.site}", title_justify="left")
    columns = (
        "resource type",
        "resources",
        "mapped",
        "ignored",
        "outside",
        "not counted",
        "with issues",
        "mapped %",
    )
    for column in columns:
        types.add_column(column, justify="left" if column == "resource type" else "right")
    for entry in sorted(result.by_type.values(), key=lambda e: e.resource_type):
        types.add_row(
            entry.resource_type,
            str(entry.total),
            str(entry.mapped),
            str(entry.ignored),
            str(entry.outside),
            str(entry.not_counted),
            str(entry.issues),
            f"{100 * entry.share_mapped:.1f}",
        )
    common.console.print(types)
    concepts = Table(title="Facts by concept", title_justify="left")
    concepts.add_column("concept")
    concepts.add_column("facts", justify="right")
    for concept, count in sorted(result.facts_by_concept.items()):
        concepts.add_row(concept, str(count))
    common.console.print(concepts)
    unmapped = Table(title="Top unmapped codes", title_justify="left")
    for column in ("code", "display", "resources"):
        unmapped.add_column(column, overflow="fold", justify="right" if column == "resources" else "left")
    for code, display, count in result.top_unmapped_codes:
        unmapped.add_row(code, display, str(count))
    if not result.top_unmapped_codes:
        unmapped.add_row("(none)", "", "0")
    common.console.print(unmapped)
    if result.outside_codes:
        outside = Table(
            title="Outside the protocol (standard codes the trial does not use; no issue)",
            title_justify="left",
        )
        for column in ("resource type", "code", "display", "resources"):
            outside.add_column(column, overflow="fold")
        for resource_type, code, display, count in result.outside_codes:
            outside.add_row(resource_type, code, display, str(count))
        common.console.print(outside)
