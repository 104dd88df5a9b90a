"""``trial-adapter remap``: map the stored resources again after a mapping change.

A hand edit of a mapping file (the catalog or a site's fix file) changes
nothing until the stored resources are mapped again; this does that
without fetching anything (``adapter.sync.remap_site``), then delivers.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from adapter.cli import common
from adapter.service import job
from adapter.store import db
from adapter.sync import SiteSetup, remap_site

AllOption = Annotated[
    bool,
    typer.Option("--all", help="Re-map every stored resource, not only those mapped with an older catalog."),
]


def remap(
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    site_id: common.SiteOption = None,
    everything: AllOption = False,
    deliver: Annotated[
        bool, typer.Option("--deliver/--no-deliver", help="Drain the outbox afterwards.")
    ] = True,
) -> None:
    """Re-map stored resources after a mapping change, without fetching.

    After editing a mapping file by hand (the site's fix file in [study]
    overrides, or a file of the mapping folder), run this:
    resources mapped with the old catalog are mapped again, their subjects
    re-derived, fixed issues resolve themselves, and changed records go out.
    """
    with common.reported_errors():
        config = common.load_config(config_path)
        sessions = db.open_store(config.store.url)
        table = Table(title="Remap", title_justify="left")
        for column in ("site", "remapped", "facts", "subjects", "upserts", "retractions", "issues resolved"):
            table.add_column(column, justify="left" if column == "site" else "right")
        for site in common.selected_sites(config, site_id):
            summary = remap_site(SiteSetup.load(config, site), sessions, everything=everything)
            table.add_row(
                site.id,
                str(summary.resources_mapped),
                str(summary.facts_written),
                str(summary.subjects_derived),
                str(summary.upserts),
                str(summary.retractions),
                str(summary.issues_resolved),
            )
        common.console.print(table)
        if deliver:
            drained = job.deliver_outbox(config, sessions)
            common.console.print(
                f"Delivered {drained.delivered} change(s)."
                if drained
                else "Another process is delivering the outbox."
            )
