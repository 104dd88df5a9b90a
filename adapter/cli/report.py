"""What the CLI prints after a pass: the summary, held retractions, delivery trouble, a resend."""

from __future__ import annotations

import datetime as dt

from rich.table import Table
from rich.text import Text

from adapter import config as config_mod
from adapter.cli.common import console, err_console, print_error, styled
from adapter.delivery import outbox, redelivery
from adapter.service import job
from adapter.sinks import factory
from adapter.store import counts, db
from adapter.store.models import utcnow


def print_summary(config: config_mod.Config, result: job.JobResult) -> int:
    """Print the pass summary; return the number of open issues."""
    sites = Table(
        title="Sync (resources read / mapped / unchanged; records upserted / retracted)", title_justify="left"
    )
    sites.add_column("site", no_wrap=True)
    # Headings may wrap or shorten so that at 80 columns every number still shows whole.
    for column in ("read", "mapped", "same", "facts", "subjects", "upserts", "retracts", "EHR requests", "s"):
        sites.add_column(column, justify="right")
    for s in result.syncs:
        sites.add_row(
            s.site,
            str(s.resources_read),
            str(s.resources_mapped),
            str(s.unchanged),
            str(s.facts_written),
            str(s.subjects_derived),
            str(s.upserts),
            str(s.retractions),
            str(s.ehr_requests),  # what the pass cost the site's server; 0 for a folder source
            f"{s.seconds:.1f}",
        )
    console.print(sites)

    sessions = db.open_store(config.store.url)
    with sessions() as session:
        records = counts.record_counts(session)
        issues = counts.open_issue_counts(session)
        backlog = counts.outbox_backlog(session).pending
        subjects = counts.current_subjects(session)

    record_table = Table(title=f"Protocol records ({subjects} subjects)", title_justify="left")
    record_table.add_column("record type")
    record_table.add_column("current", justify="right")
    for record_type, count in sorted(records.items()):
        record_table.add_row(record_type, str(count))
    console.print(record_table)

    issue_table = Table(title="Open issues", title_justify="left")
    issue_table.add_column("kind")
    issue_table.add_column("open", justify="right")
    for kind, count in sorted(issues.items()):
        issue_table.add_row(kind, str(count))
    if not issues:
        issue_table.add_row("(none)", "0")
    console.print(issue_table)

    if result.delivery is not None:
        d = result.delivery
        console.print(
            Text.assemble(
                f"Delivered {d.delivered} change(s) to {config.repository.kind} repository ",
                (factory.describe(config.repository), "bold"),
                f"; {backlog} waiting in the outbox.",
            )
        )
    config_hint = f" -c {config.source_file}" if config.source_file else ""
    console.print(
        f"Next: `trial-adapter issues list{config_hint}` shows each issue with its explanation."
        if issues
        else "No open issues."
    )
    return sum(issues.values())


def _config_hint(config: config_mod.Config) -> str:
    return f" -c {config.source_file}" if config.source_file else ""


def print_delivery_trouble(config: config_mod.Config, drained: outbox.DrainSummary | None) -> bool:
    """Say why items wait and when they are tried again; True when their last attempt failed (exit 7).

    Items waiting only because an earlier run failed (their backoff has not
    passed, so this run tried nothing) count too: the last word on them is a
    failure, and a script must not read "0 delivered" as success.
    """
    if drained is None or not drained.retrying:
        return False
    hint = _config_hint(config)
    error = drained.error or "unknown error"
    if drained.failed:
        head = f"delivery failed: {error}"
    else:
        head = (
            f"{drained.retrying} item(s) are waiting out their backoff after failing earlier, so this run "
            f"did not try them. Last error: {error}"
        )
    print_error(head)
    err_console.print(
        f"{drained.retrying} item(s) wait because their last attempt failed; next retry "
        f"{_when(drained.next_retry_at)}, by the next `trial-adapter push`, `sync` or the "
        f"service's delivery turn. After fixing the cause, `trial-adapter push --retry-now{hint}` "
        f"tries at once; `trial-adapter outbox{hint}` lists each failing item.",
        highlight=False,
    )
    return True


def _when(moment: dt.datetime | None) -> str:
    if moment is None:
        return "at the next delivery"
    now = utcnow()
    if moment <= now:
        return "due now"
    seconds = int((moment - now).total_seconds())
    wait = f"{seconds} s" if seconds < 120 else f"{round(seconds / 60)} min"
    return f"at {moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC (in {wait})"


def print_repository_change(config: config_mod.Config, change: redelivery.Change) -> None:
    """The configured repository lacks current records an earlier one got: say so, and the fix."""
    err_console.print(styled("warning:", "yellow", change.message(_config_hint(config))), highlight=False)


def print_resent(resent: redelivery.Resent) -> None:
    if not resent.queued:
        console.print(
            f"Resend: nothing to queue; {resent.repository} holds every current record or is about to.",
            highlight=False,
            soft_wrap=True,
        )
        return
    types = ", ".join(f"{kind} {count}" for kind, count in sorted(resent.by_type.items()))
    console.print(
        f"Resend: queued {resent.queued} current record(s) for {resent.repository} ({types}).",
        highlight=False,
        soft_wrap=True,
    )


def print_held_retractions(config: config_mod.Config, result: job.JobResult) -> bool:
    """Say which retractions the guard held back, and how to go on; True if any."""
    held = [(summary.site, kind, count) for summary in result.syncs for kind, count in summary.held.items()]
    config_hint = f" -c {config.source_file}" if config.source_file else ""
    for site, resource_type, count in held:
        console.print(
            styled(
                "held back:",
                "yellow",
                f"{site} no longer lists {count} stored {resource_type} resource(s), all or an unusual "
                "share of them; nothing of that type was retracted. If the export or search is broken, "
                "fix it and sync again; if the site really deleted them: "
                f"`trial-adapter accept-retraction --site {site} --type {resource_type} "
                f'--reason "…"{config_hint}`',
            ),
            highlight=False,
            soft_wrap=True,
        )
    return bool(held)
