"""What the CLI prints after a pass, and the per-site check table."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from adapter import config as config_mod
from adapter import errors, job
from adapter.cli.common import console
from adapter.fhir import capability, ndjson
from adapter.fhir import settings as fhir_settings
from adapter.mapping import overrides
from adapter.sinks import factory
from adapter.store import db, state
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
    try:
        db.open_store(config.store.url)
        table.add_row("-", "state database", "[green]ok[/green]")
    except errors.AdapterError as exc:
        table.add_row("-", "state database", "[red]failed[/red]")
        failures.append(exc.exit_code)
        problems.append(f"state database: {exc}")
    for site in config.sites:
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
            failures += _print_server_checks(table, site.id, site.source, problems)
            continue
        try:
            lines = ndjson.count_lines(site.source.path)
            table.add_row(site.id, f"source {site.source.kind}", f"[green]ok[/green] ({lines} resources)")
        except errors.AdapterError as exc:
            table.add_row(site.id, f"source {site.source.kind}", "[red]failed[/red]")
            failures.append(exc.exit_code)
            problems.append(f"{site.id}: {exc}")
    console.print(table)
    for problem in problems:
        console.print(f"[red]✗[/red] {escape(problem)}", highlight=False, soft_wrap=True)
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
    table: Table, site_id: str, server: fhir_settings.FhirServerSettings, problems: list[str]
) -> list[int]:
    """Rows for a FHIR-server source (``adapter.fhir.capability``); the exit codes of red ones."""
    failures = []
    for row in capability.check_server(site_id, server):
        if row.ok:
            verdict = "[yellow]warning[/yellow]" if row.warning else "[green]ok[/green]"
            table.add_row(site_id, row.item, f"{verdict} ({escape(row.detail)})")
        else:
            table.add_row(site_id, row.item, "[red]failed[/red]")
            failures.append(errors.EXIT_SOURCE)
            problems.append(f"{site_id}: {row.item}: {row.detail}")
    return failures
