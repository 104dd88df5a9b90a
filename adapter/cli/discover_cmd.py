"""``trial-adapter discover``: the codes and units a site sends for its roster patients.

Reading the site is ``adapter.fhir.discover``'s job and judging each code
``adapter.mapping.discovery``'s; this module prints the result as a table
to read, or as CSV or JSON for a script (``formats``).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from adapter import roster as roster_mod
from adapter.cli import common, formats
from adapter.fhir import discover as discover_mod
from adapter.mapping import catalog as catalog_mod
from adapter.mapping import discovery

FIELDS = ("resource_type", "system", "code", "display", "unit", "count", "status", "concept")
# How the table names a catalog verdict other than a concept; "unmapped" is red.
VERDICTS = {"ignored": "ignored", "outside": "outside the protocol"}


def discover(
    site_id: Annotated[str, typer.Option("--site", "-s", help="The site to ask (a [[sites]] id).")],
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    only_unmapped: Annotated[
        bool, typer.Option("--unmapped", help="List only codes the catalog does not map or ignore.")
    ] = False,
    output: formats.FormatOption = formats.OutputFormat.TABLE,
    as_json: Annotated[bool, typer.Option("--json", help="The same as --format json.")] = False,
) -> None:
    """List the codes and units the site actually sends for roster patients, with counts.

    Reads every Observation, MedicationAdministration and Procedure of the
    roster's patients (without the sync's code filter), stores nothing, and
    shows for each code whether the catalog maps it, so local codes can be
    mapped (`trial-adapter map code`) before go-live.

    \b
    --format table (the default) wraps long codes inside their cell, never cuts them.
    --format csv: a header row, then one row per code with every field:
      resource_type,system,code,display,unit,count,status,concept
      Observation,http://hospital-east.example/fhir/lis,0099,Sodium,mmol/L,2,unmapped,
    --format json: an array of objects with the same fields, e.g.
      trial-adapter discover -s SITE --unmapped --format json | jq -r '.[].code'
    status is mapped, ignored, outside (a standard code the protocol does not
    use) or unmapped; concept is the catalog concept of a mapped code.
    """
    chosen = formats.chosen(output, as_json)
    with common.reported_errors():
        config = common.load_config(config_path)
        site = config.site(site_id)
        catalog = catalog_mod.load_catalog(config.study.mappings, site.id, config.overrides_dir())
        roster = roster_mod.load_roster(site.roster)
        result = discovery.judge(discover_mod.discover_site(site.id, site.source, roster), catalog)
    codes = result.unmapped if only_unmapped else result.codes
    if chosen is not formats.OutputFormat.TABLE:
        formats.echo_items(chosen, FIELDS, [_item(use) for use in codes])
        return
    _print_table(result, codes)


def _item(use: discovery.CodeUse) -> dict[str, object]:
    return {field: getattr(use, field) for field in FIELDS}


def _print_table(result: discovery.SiteCodes, codes: list[discovery.CodeUse]) -> None:
    table = Table(
        title=f"Codes sent by {result.site} ({result.patients_found} roster patients, "
        f"{result.resources_read} resources)",
        title_justify="left",
    )
    for column in ("resource type", "code", "display", "unit", "count", "catalog"):
        table.add_column(column, justify="right" if column == "count" else "left", overflow="fold")
    for use in codes:
        table.add_row(
            use.resource_type,
            f"{use.system}|{use.code}" if use.code else "(none)",
            use.display,
            use.unit,
            str(use.count),
            _verdict(use),
        )
    common.console.print(table)
    if result.unmapped:
        common.console.print(
            f"{len(result.unmapped)} unmapped code(s): map each with `trial-adapter map code "
            f"SYSTEM|CODE CONCEPT --site {result.site}`, or `trial-adapter map ignore-code` one the "
            "protocol does not use.",
            highlight=False,
        )


def _verdict(use: discovery.CodeUse) -> Text:
    if use.concept:
        return Text(use.concept, style="green")
    if use.status == "unmapped":
        return Text("unmapped", style="red")
    return Text(VERDICTS.get(use.status, use.status))
