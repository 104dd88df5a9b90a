"""``trial-adapter push`` and ``trial-adapter outbox``: the delivery side, by hand.

``push`` drains the outbox now (the scheduled job does the same after every
sync); ``push --dry-run`` prints the requests the sink would make for the
next items, as JSON, without sending anything or reading any credential.
``push --resend`` first queues every current record the configured
repository lacks (after ``[repository]`` changed, ``adapter.delivery.redelivery``).
``outbox`` shows the backlog: how much is owed, what keeps failing, since
when.  Both are thin: ``adapter.delivery.outbox``, ``adapter.delivery.redelivery``,
``adapter.delivery.report`` and ``adapter.sinks`` do the work.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import orjson
import typer
from rich.table import Table

from adapter import errors
from adapter.cli import common, report
from adapter.delivery import redelivery
from adapter.delivery.outbox import due_deliveries
from adapter.delivery.report import OutboxReport, outbox_report
from adapter.service import job
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
    resend: Annotated[
        bool,
        typer.Option(
            "--resend",
            help="First queue every current record the configured repository does not hold yet (after "
            "[repository] changed), then deliver. Only upserts, nothing it already has or is about to get: "
            "running it twice queues nothing the second time. With --dry-run: count them, queue nothing.",
        ),
    ] = False,
    site_id: Annotated[
        str | None, typer.Option("--site", "-s", help="With --resend: only this site's records.")
    ] = None,
    record_type: Annotated[
        str | None,
        typer.Option("--type", "-t", help="With --resend: only records of this type, e.g. TreatmentCycle."),
    ] = None,
    retry_now: Annotated[
        bool,
        typer.Option(
            "--retry-now",
            help="Also try items still waiting out their backoff after a failure (after fixing the cause).",
        ),
    ] = False,
    actor: common.ActorOption = None,
) -> None:
    """Deliver the outbox to the trial repository now.

    Items go out in order per subject; a failed item waits with backoff and
    is retried by the next push, sync or service delivery turn.

    \b
    Exit code 7 when items still wait because their last attempt failed, in
    this run or an earlier one (then nothing is tried before the backoff
    ends; --retry-now tries at once): the error and the time of the next
    retry are printed, with credentials blanked.

    \b
    After changing [repository] (say from a file folder to the trial's FHIR
    server), run `trial-adapter push --resend` once: syncs send only what
    changed, so the new repository would otherwise get only new changes.
    Items queued before the change go to the repository configured now.
    """
    for name, value in (("--site", site_id), ("--type", record_type)):
        if value is not None and not resend:
            raise typer.BadParameter(f"{name} only goes with --resend", param_hint=name)
    with common.reported_errors():
        config = common.load_config(config_path)
        sessions = db.open_store(config.store.url)
        sink = factory.make_sink(config.repository)
        if dry_run:
            plan: dict[str, object] = {"repository": sink.description}
            if resend:
                counted = redelivery.resend(
                    config, sessions, site=site_id, record_type=record_type, dry_run=True
                )
                plan["resend"] = {"would_queue": counted.queued, "by_type": counted.by_type}
            items = due_deliveries(sessions, limit=limit)
            plan |= {
                "items": len(items),
                "credentials": "not shown: added only when sending",
                "requests": [dataclasses.asdict(request) for request in sink.preview(items)],
            }
            typer.echo(orjson.dumps(plan, option=orjson.OPT_INDENT_2, default=str).decode())
            return
        if resend:
            resent = redelivery.resend(
                config, sessions, site=site_id, record_type=record_type, actor=common.actor_name(actor)
            )
            report.print_resent(resent)
        else:
            change = job.repository_change(config, sessions)
            if change is not None:
                report.print_repository_change(config, change)
        drained = job.deliver_outbox(config, sessions, retry_now=retry_now)
        if drained is None:
            common.console.print("Another process is delivering the outbox right now; nothing done.")
            return
        where = factory.describe(config.repository)
        common.console.print(
            f"Delivered {drained.delivered} change(s) to {config.repository.kind} repository {where}; "
            f"{drained.failed} failed, {drained.waiting} waiting.",
            highlight=False,
            soft_wrap=True,
        )
        if drained.stopped:
            common.console.print("Stopped early: the repository is unavailable.", highlight=False)
        if report.print_delivery_trouble(config, drained):
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
