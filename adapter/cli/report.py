"""What the CLI prints after a pass, and the per-site check table."""

from __future__ import annotations

import datetime as dt

from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter import errors
from adapter.cli.common import console, err_console
from adapter.delivery import outbox, redelivery
from adapter.fhir import capability, ndjson
from adapter.fhir import settings as fhir_settings
from adapter.mapping import discovery, overrides
from adapter.service import job
from adapter.sinks import factory
from adapter.store import db, state
from adapter.store.models import utcnow
from adapter.sync import SiteSetup


def print_summary(config: config_mod.Config, result: job.JobResult) -> int:
    """Print the pass summary; return the number of open issues."""
    sites = Table(
        title="Sync (resources read / mapped / unchanged; records upserted / retracted)", title_justify="left"
    )
    for column in ("site", "read", "mapped", "same", "facts", "subjects", "upserts", "retracts", "s"):
        sites.add_column(column, justify="right" if column != "site" else "left", no_wrap=True)
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
            f"{s.seconds:.1f}",
        )
    console.print(sites)

    sessions = db.open_store(config.store.url)
    with sessions() as session:
        records = state.record_counts(session)
        issues = state.open_issue_counts(session)
        backlog, _oldest = state.outbox_backlog(session)
        subjects = session.execute(
            state.sa.select(state.sa.func.count(state.sa.distinct(state.models.RecordRow.subject_id))).where(
                state.models.RecordRow.retracted.is_(False)
            )
        ).scalar_one()

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
            f"Delivered {d.delivered} change(s) to {config.repository.kind} repository "
            f"[bold]{factory.describe(config.repository)}[/bold]; {backlog} waiting in the outbox."
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
    err_console.print(f"[red]error:[/red] {escape(head)}", highlight=False)
    err_console.print(
        f"{drained.retrying} item(s) wait because their last attempt failed; next retry "
        f"{escape(_when(drained.next_retry_at))}, by the next `trial-adapter push`, `sync` or the "
        f"service's delivery turn. After fixing the cause, `trial-adapter push --retry-now{escape(hint)}` "
        f"tries at once; `trial-adapter outbox{escape(hint)}` lists each failing item.",
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
    err_console.print(
        f"[yellow]warning:[/yellow] {escape(change.message(_config_hint(config)))}", highlight=False
    )


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
            f"[yellow]held back:[/yellow] {escape(site)} no longer lists {count} stored "
            f"{escape(resource_type)} resource(s), all or an unusual share of them; nothing of that "
            "type was retracted. If the export or search is broken, fix it and sync again; if the "
            "site really deleted them: "
            f"`trial-adapter accept-retraction --site {escape(site)} --type {escape(resource_type)} "
            f'--reason "…"{escape(config_hint)}`',
            highlight=False,
            soft_wrap=True,
        )
    return bool(held)


def print_check(config: config_mod.Config) -> list[int]:
    """Check each site's files; print a table; return the exit codes of failures."""
    table = Table(title="Check", title_justify="left")
    table.add_column("site")
    table.add_column("item")
    table.add_column("result")
    failures: list[int] = []
    problems: list[str] = []
    warnings: list[str] = []
    sessions: sessionmaker[Session] | None = None
    try:
        sessions = db.open_store(config.store.url)
        table.add_row("-", "state database", "[green]ok[/green]")
    except errors.AdapterError as exc:
        table.add_row("-", "state database", "[red]failed[/red]")
        failures.append(exc.exit_code)
        problems.append(f"state database: {exc}")
    for site in config.sites:
        setup: SiteSetup | None = None
        try:
            setup = SiteSetup.load(config, site)
            table.add_row(
                site.id,
                "mappings, rules, roster, secret",
                f"[green]ok[/green] (catalog {setup.catalog.version}, {len(setup.roster.entries)} on roster)",
            )
        except errors.AdapterError as exc:
            table.add_row(site.id, "mappings, rules, roster, secret", "[red]failed[/red]")
            failures.append(exc.exit_code)
            problems.append(f"{site.id}: {exc}")
        failures += _print_fix_file_check(table, config, site.id, problems)
        if not isinstance(site.source, config_mod.NdjsonSource):
            failures += _print_server_checks(table, site.id, site.source, problems, setup)
            continue
        try:
            lines = ndjson.count_lines(site.source.path)
            table.add_row(site.id, f"source {site.source.kind}", f"[green]ok[/green] ({lines} resources)")
        except errors.AdapterError as exc:
            table.add_row(site.id, f"source {site.source.kind}", "[red]failed[/red]")
            failures.append(exc.exit_code)
            problems.append(f"{site.id}: {exc}")
    failures += _print_repository_checks(table, config, sessions, problems, warnings)
    console.print(table)
    for problem in problems:
        console.print(f"[red]✗[/red] {escape(problem)}", highlight=False, soft_wrap=True)
    for warning in warnings:
        console.print(f"[yellow]![/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    return failures


def _print_repository_checks(
    table: Table,
    config: config_mod.Config,
    sessions: sessionmaker[Session] | None,
    problems: list[str],
    warnings: list[str],
) -> list[int]:
    """The trial repository: reachable, credentials taken, writable (the sink's ``probe``, which
    writes nothing), and whether it lacks records an earlier repository got."""
    item = f"repository {config.repository.kind}"
    failures: list[int] = []
    try:
        probe = factory.make_sink(config.repository).probe()
    except errors.AdapterError as exc:  # a token that cannot be read
        table.add_row("-", item, "[red]failed[/red]")
        problems.append(f"{item}: {exc}")
        failures.append(exc.exit_code)
    else:
        if not probe.ok:
            table.add_row("-", item, "[red]failed[/red]")
            problems.append(f"{item}: {probe.detail}")
            failures.append(errors.EXIT_DELIVERY)
        else:
            verdict = "[yellow]warning[/yellow]" if probe.warning else "[green]ok[/green]"
            table.add_row("-", item, f"{verdict} ({escape(probe.detail)})")
    if sessions is not None:
        change = redelivery.change(config, sessions)
        if change is None:
            table.add_row("-", "records at the repository", "[green]ok[/green]")
        else:
            table.add_row(
                "-", "records at the repository", f"[yellow]warning[/yellow] ({change.owed} missing)"
            )
            warnings.append(change.message(_config_hint(config)))
    return failures


def _print_fix_file_check(
    table: Table, config: config_mod.Config, site_id: str, problems: list[str]
) -> list[int]:
    """Where the site's own mapping fixes live, and whether a fix could be stored there."""
    path = overrides.path_for(config.overrides_dir(), site_id)
    verdict = overrides.writability(path)
    if not verdict.writable:
        table.add_row(site_id, "mapping fix file", "[red]not writable[/red]")
        problems.append(f"{site_id}: mapping fix file {path}: {verdict.problem}")
        return [errors.EXIT_CONFIG]
    entries = sum(len(values) for values in overrides.read_override(path).values()) if verdict.exists else 0
    state = f"{entries} fix(es)" if verdict.exists else "created on the first fix"
    table.add_row(site_id, "mapping fix file", f"[green]ok[/green] ({escape(str(path))}, writable; {state})")
    return []


def _print_server_checks(
    table: Table,
    site_id: str,
    server: fhir_settings.FhirServerSettings,
    problems: list[str],
    setup: SiteSetup | None = None,
) -> list[int]:
    """Rows for a FHIR-server source (``adapter.fhir.capability``); the exit codes of red ones.

    With the site's setup (roster and catalog loaded), a ``fhir-rest`` site also
    gets the behaviour rows ("behaviour: ...", ``adapter.fhir.probe``); without
    it they are left out, and the setup's own row says why.
    """
    failures = []
    roster = setup.roster if setup is not None else None
    wanted = discovery.source_wanted(setup.catalog) if setup is not None else None
    for row in capability.check_server(site_id, server, roster=roster, wanted=wanted):
        if row.ok:
            verdict = "[yellow]warning[/yellow]" if row.warning else "[green]ok[/green]"
            table.add_row(site_id, row.item, f"{verdict} ({escape(row.detail)})")
        else:
            table.add_row(site_id, row.item, "[red]failed[/red]")
            failures.append(errors.EXIT_SOURCE)
            problems.append(f"{site_id}: {row.item}: {row.detail}")
    return failures
