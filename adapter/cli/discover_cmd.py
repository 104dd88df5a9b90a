"""``trial-adapter discover``: the codes and units a site sends for its roster patients."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from adapter import roster as roster_mod
from adapter.cli import common
from adapter.fhir import discover as discover_mod
from adapter.mapping import catalog as catalog_mod
from adapter.mapping import discovery


def discover(
    site_id: Annotated[str, typer.Option("--site", "-s", help="The site to ask (a [[sites]] id).")],
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    only_unmapped: Annotated[
        bool, typer.Option("--unmapped", help="List only codes the catalog does not map or ignore.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the codes and units the site actually sends for roster patients, with counts.

    Reads every Observation, MedicationAdministration and Procedure of the
    roster's patients (without the sync's code filter), stores nothing, and
    shows for each code whether the catalog maps it, so local codes can be
    mapped (`trial-adapter map code`) before go-live.
    """
    with common.reported_errors():
        config = common.load_config(config_path)
        site = config.site(site_id)
        catalog = catalog_mod.load_catalog(config.study.mappings, site.id, config.overrides_dir())
        roster = roster_mod.load_roster(site.roster)
        result = discovery.judge(discover_mod.discover_site(site.id, site.source, roster), catalog)
        codes = result.unmapped if only_unmapped else result.codes
        if as_json:
            common.console.print_json(orjson.dumps([c.__dict__ for c in codes]).decode())
            return
        table = Table(
            title=f"Codes sent by {site.id} ({result.patients_found} roster patients, "
            f"{result.resources_read} resources)",
            title_justify="left",
        )
        for column in ("resource type", "code", "display", "unit", "count", "catalog"):
            table.add_column(column, justify="right" if column == "count" else "left")
        for use in codes:
            verdict = (
                f"[green]{use.concept}[/green]"
                if use.concept
                else ("ignored" if use.status == "ignored" else "[red]unmapped[/red]")
            )
            code = f"{use.system}|{use.code}" if use.code else "(none)"
            table.add_row(
                use.resource_type,
                escape(code),
                escape(use.display),
                escape(use.unit),
                str(use.count),
                verdict,
            )
        common.console.print(table)
        if result.unmapped:
            common.console.print(
                f"{len(result.unmapped)} unmapped code(s): map each with `trial-adapter map code "
                f"SYSTEM|CODE CONCEPT --site {site.id}`, or `trial-adapter map ignore-code` one the "
                "protocol does not use."
            )
