"""``trial-adapter status``: how each site is doing, for a person or a script."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import orjson
import typer
from rich.table import Table

from adapter.cli import common
from adapter.service import status as status_mod
from adapter.store import db

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output (times in UTC).")]


def status(config_path: common.ConfigOption = common.DEFAULT_CONFIG, as_json: JsonOption = False) -> None:
    """Per site: last run and outcome, watermarks, records waiting in the outbox, open issues, next run.

    Read from the state database, so it works whether or not the service is
    running; "next" times appear while `trial-adapter run` is running. A pass
    whose process is gone (kill -9, power cut) shows as interrupted.
    """
    with common.reported_errors():
        config = common.load_config(config_path)
        snapshot = status_mod.snapshot(db.open_store(config.store.url), config)
    if as_json:
        typer.echo(orjson.dumps(snapshot.to_json(), option=orjson.OPT_INDENT_2).decode())
        return
    _print(snapshot)


def _print(snapshot: status_mod.Snapshot) -> None:
    now = snapshot.generated_at
    sites = Table(title="Sites", title_justify="left")
    for column in ("site", "last run", "outcome", "last success", "next sync", "outbox", "open issues"):
        sites.add_column(column, no_wrap=column in ("site", "outcome", "outbox", "open issues"))
    for site in snapshot.sites:
        run = site.last_run
        sites.add_row(
            site.site,
            _when(run.started_at, now) if run else "never",
            run.outcome if run else "-",
            _when(site.last_success_at, now),
            _when(site.next_sync, now) + (" overdue" if _overdue(site.next_sync, now) else ""),
            str(site.outbox_pending),
            "\n".join(f"{kind} {count}" for kind, count in site.open_issues.items()) or "none",
        )
    common.console.print(sites)
    if snapshot.schedule_known and not snapshot.service_running:
        common.console.print(
            "The service (`trial-adapter run`) is not running: nothing is scheduled until it starts.",
            highlight=False,
        )
    if any(_overdue(site.next_sync, now) for site in snapshot.sites):
        common.console.print("Next syncs are overdue: is `trial-adapter run` running?", highlight=False)

    marks = Table(title="Watermarks (incremental sync resumes after these)", title_justify="left")
    for column in ("site", "resource type", "watermark", "note"):
        marks.add_column(column)
    for site in snapshot.sites:
        for resource_type, watermark in site.watermarks.items():
            note = (
                "a pass stopped inside; the next one resumes" if resource_type in site.resume_pending else ""
            )
            marks.add_row(
                site.site, resource_type, _when(watermark, now) if watermark else "(full read)", note
            )
    common.console.print(marks)
    common.console.print(
        f"Outbox: {snapshot.outbox_pending} waiting"
        + (f", oldest since {_when(snapshot.outbox_oldest, now)}" if snapshot.outbox_oldest else "")
        + f"; next delivery {_when(snapshot.next_delivery, now)}.",
        highlight=False,
    )


def _overdue(moment: dt.datetime | None, now: dt.datetime) -> bool:
    """A next run more than a minute in the past: no scheduler is picking it up."""
    return moment is not None and now - moment > dt.timedelta(minutes=1)


def _when(moment: dt.datetime | None, now: dt.datetime) -> str:
    """``2026-05-04 10:15Z (12m ago)``: absolute for the record, relative for the reader."""
    if moment is None:
        return "-"
    seconds = int((moment - now).total_seconds())
    span = abs(seconds)
    amount = f"{span}s" if span < 120 else f"{span // 60}m" if span < 7200 else f"{span // 3600}h"
    relative = f"in {amount}" if seconds > 0 else f"{amount} ago"
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M}Z ({relative})"
