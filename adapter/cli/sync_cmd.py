"""``trial-adapter sync``: one pass for every site, then delivery, with a progress bar.

``run_with_progress`` is the pass with its progress bar, shared with
``trial-adapter demo``; what is printed afterwards is ``report``'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from adapter import config as config_mod
from adapter import errors
from adapter.cli import common, report
from adapter.service import job
from adapter.store import db


def sync(
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    site_id: common.SiteOption = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Accepted for existing scripts: sync always makes one pass and exits; "
            "`trial-adapter run` syncs on a schedule.",
        ),
    ] = False,
    full: Annotated[
        bool, typer.Option("--full", help="Re-map every stored resource, not just new versions.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    fail_on_issues: Annotated[
        bool, typer.Option("--fail-on-issues", help="Exit 10 when open issues remain after the pass.")
    ] = False,
) -> None:
    """Sync every configured site once, then deliver the outbox.

    \b
    Exit codes: 8 when a retraction was held back; else 7 when delivery
    items wait because their last attempt failed (in this run, or an earlier
    one whose backoff has not passed), with the error and the next retry
    time; else 10 with --fail-on-issues and open issues.  After [repository]
    changed, a warning names `trial-adapter push --resend`.
    """
    with common.reported_errors():
        config = common.load_config(config_path)
        sites = common.selected_sites(config, site_id)
        result = run_with_progress(config, sites, full=full, quiet=quiet)
        open_issues = report.print_summary(config, result)
        held = report.print_held_retractions(config, result)
        failing = report.print_delivery_trouble(config, result.delivery)
        if held:
            raise typer.Exit(errors.EXIT_RETRACTION_HELD)
        if failing:
            raise typer.Exit(errors.EXIT_DELIVERY)
        if fail_on_issues and open_issues:
            raise typer.Exit(errors.EXIT_ISSUES_OPEN)


def run_with_progress(
    config: config_mod.Config, sites: Sequence[config_mod.SiteConfig], *, full: bool, quiet: bool
) -> job.JobResult:
    """Sync ``sites`` and deliver, with a progress bar on stderr unless ``quiet``.

    A warning comes first when [repository] changed and the new one lacks
    current records (``trial-adapter push --resend`` queues them).
    """
    setups = job.load_setups(config, sites)
    change = job.repository_change(config, db.open_store(config.store.url))
    if change is not None:
        report.print_repository_change(config, change)
    if quiet:
        return job.run_setups(config, setups, full=full)
    total = job.expected_lines(setups)
    columns = (
        TextColumn("syncing", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("resources"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=common.err_console, transient=True) as bar:
        task = bar.add_task("sync", total=total)
        return job.run_setups(config, setups, full=full, progress=lambda n: bar.advance(task, n))
