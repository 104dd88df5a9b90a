"""The ``trial-adapter`` command line: the app, assembled from its commands.

Thin commands over the library (as in smart-fetch's ``cli/``): each
``*_cmd`` module parses its options, loads the config, calls one library
function and reports.  This module only puts them together, with the
options every command shares (log level and format, ``--version``).
``run()`` is the console-script entry point; tests call ``app`` through
typer's CliRunner or ``main(argv)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from adapter import __version__, errors, logs
from adapter.cli import (
    check_cmd,
    common,
    console_cmd,
    coverage_cmd,
    db_cmd,
    demo_cmd,
    discover_cmd,
    issues_cmd,
    keygen_cmd,
    map_fixes_cmd,
    outbox_cmd,
    remap_cmd,
    retraction_cmd,
    run_cmd,
    status_cmd,
    sync_cmd,
    users_cmd,
)

HELP = """\
Pull trial data from a hospital's FHIR server, map it onto the NCT06507514
protocol, and deliver pseudonymized records to the trial repository.

\b
First steps:
  trial-adapter demo                      run the whole pipeline on the bundled demo sites
  trial-adapter check -c site.toml        validate a real site's config, mappings and roster
  trial-adapter sync -c site.toml --once  one sync pass for every site, then deliver
  trial-adapter issues list -c site.toml  what could not be mapped, and why

Exit codes: 0 ok, 3 bad config, 4 bad mapping file, 5 source unreadable,
6 state database unusable, 7 delivery failed (sync, push: items wait because
their last attempt failed; check: the repository cannot be reached, refuses
the credentials or cannot be written), 8 retraction held back (the source
stopped listing all or most of a type; see accept-retraction), 9 server
fault (the EHR answered a search with results it did not ask for; see
check), 10 open issues with --fail-on-issues.
"""

app = typer.Typer(help=HELP, no_args_is_help=True, rich_markup_mode=None, add_completion=False)
# Commands in the order `trial-adapter --help` lists them (typer lists the
# single commands first, then the groups).
app.command()(remap_cmd.remap)
app.command()(coverage_cmd.coverage)
app.command()(discover_cmd.discover)
app.command()(outbox_cmd.push)
app.command()(outbox_cmd.outbox)
app.command("run")(run_cmd.run)
app.command("status")(status_cmd.status)
app.command("console")(console_cmd.console)
app.command("accept-retraction")(retraction_cmd.accept_retraction)
app.command("demo")(demo_cmd.demo)
app.command("demo-data")(demo_cmd.demo_data)
app.command("sync")(sync_cmd.sync)
app.command("check")(check_cmd.check)
app.command("keygen")(keygen_cmd.keygen)
app.add_typer(issues_cmd.app, name="issues")
app.add_typer(db_cmd.app, name="db")
app.add_typer(map_fixes_cmd.app, name="map")
app.add_typer(users_cmd.app, name="users")


def _version(value: bool) -> None:
    if value:
        common.console.print(f"trial-adapter {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error (logs go to stderr).")
    ] = "warning",
    json_logs: Annotated[
        bool | None,
        typer.Option(
            "--json-logs/--text-logs", help="Force the log format (default: JSON unless a terminal)."
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    logs.configure(log_level, json_logs)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv``; return the exit code instead of exiting.

    A ``errors.fatal`` raised outside a command's ``common.reported_errors``
    (say while reading an option) passes through typer untouched; its message
    is printed here, so no fatal exit is ever silent.
    """
    try:
        app(args=list(argv) if argv is not None else None, prog_name="trial-adapter", standalone_mode=True)
    except errors.FatalExit as exc:
        common.print_error(exc.message)
        return int(exc.code or 1)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())
