"""``trial-adapter push`` and ``trial-adapter outbox``: the delivery side, by hand.

``push`` drains the outbox now (the scheduled job does the same after every
sync); ``push --dry-run`` prints the requests the sink would make for the
next items, as JSON, without sending anything or reading any credential.
``outbox`` shows the backlog: how much is owed, what keeps failing, since
when.  Both are thin: ``adapter.delivery`` and ``adapter.sinks`` do the work.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import orjson
import typer
from rich.table import Table

from adapter import errors, job
from adapter.cli import common
from adapter.delivery import OutboxReport, due_deliveries, outbox_report
from adapter.sinks import factory
from adapter.store import db

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def push(
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print, as JSON, the requests the next items would make; send nothing."
        ),
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="With --dry-run: at most this many outbox items.")
    ] = 20,
) -> None:
    """Deliver the outbox to the trial repository now.

    Items go out in order per subject; a failed item waits with backoff and
    is retried by the next push or sync.  Exit code 7 when an item failed.
    """
    with common.reported_errors():
        config = common.load_config(config_path)
        sessions = db.open_store(config.store.url)
        sink = factory.make_sink(config.repository)
        if dry_run:
            items = due_deliveries(sessions, limit=limit)
            plan = {
                "repository": sink.description,
                "items": len(items),
                "credentials": "not shown: added only when sending",
                "requests": [dataclasses.asdict(request) for request in sink.preview(items)],
            }
            typer.echo(orjson.dumps(plan, option=orjson.OPT_INDENT_2, default=str).decode())
            return
        drained = job.deliver_outbox(config, sessions)
        if drained is None:
            common.console.print("Another process is delivering the outbox right now; nothing done.")
            return
        where = factory.describe(config.repository)
        common.console.print(
            f"Delivered {drained.delivered} change(s) to {config.repository.kind} repository {where}; "
            f"{drained.failed} failed, {drained.waiting} waiting.",
            highlight=False,
        )
        if drained.stopped:
            common.console.print(f"Stopped early: {drained.stopped}", highlight=False)
        if drained.failed:
            common.err_console.print("`trial-adapter outbox` shows each failing item and its error.")
            raise typer.Exit(errors.EXIT_DELIVERY)


def outbox(
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    as_json: JsonOption = False,
    failures: Annotated[
        int, typer.Option("--failures", min=0, help="List at most this many failing items.")
    ] = 20,
) -> None:
    """Show the delivery backlog: pending items by type, failing items with their errors, the oldest item."""
    with common.reported_errors():
        config = common.load_config(config_path)
        sessions = db.open_store(config.store.url)
        with sessions() as session:
            report = outbox_report(session, failures=failures)
        if as_json:
            typer.echo(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode())
            return
        _print(report, factory.describe(config.repository))


def _print(report: OutboxReport, where: str) -> None:
    oldest = report.oldest_pending_at.isoformat(timespec="seconds") if report.oldest_pending_at else "-"
    last = report.last_delivered_at.isoformat(timespec="seconds") if report.last_delivered_at else "never"
    common.console.print(
        f"Outbox for {where}: {report.pending} pending ({report.failing} failing), oldest {oldest}; "
        f"{report.delivered} delivered, last {last}.",
        highlight=False,
    )
    if report.pending_by_type:
        table = Table(title="Pending", title_justify="left")
        for column in ("record type", "upsert", "retract"):
            table.add_column(column, justify="left" if column == "record type" else "right")
        for record_type, ops in sorted(report.pending_by_type.items()):
            table.add_row(record_type, str(ops.get("upsert", 0)), str(ops.get("retract", 0)))
        common.console.print(table)
    if report.failures:
        table = Table(title="Failing", title_justify="left")
        for column in ("item", "subject", "change", "attempts", "next attempt", "last error"):
            table.add_column(column, overflow="fold")
        for item in report.failures:
            table.add_row(
                str(item.item_id),
                item.subject_id,
                f"{item.operation} {item.record_type}",
                str(item.attempts),
                item.next_attempt_at.isoformat(timespec="seconds") if item.next_attempt_at else "-",
                item.last_error,
            )
        common.console.print(table)
