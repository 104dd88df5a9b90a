"""What every command shares: options, config loading, error reporting, who acts.

Commands stay thin (smart-fetch style): parse, load, call the library,
report.  Library errors become one red line and a stable exit code
(``adapter.errors``), never a traceback.

Both consoles print text as it is, never as rich markup: what the CLI prints
comes from configs, mapping files, servers and messages that name TOML
tables (``[codes]``, ``[[sites]]``), and markup would swallow those.  The few
deliberate styles are ``rich.text.Text`` spans (``styled``), so no call site
has to remember to escape anything.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from adapter import actors, errors
from adapter import config as config_mod

# Wide enough for the summary tables when output goes to a file or a pipe
# (rich would otherwise assume 80 columns and truncate the numbers); a
# COLUMNS variable, as a script may set, wins.
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120, markup=False)
# Errors are never wrapped: a URL or a config key split over two lines can't be
# copied from cron mail or matched by a log scraper.
err_console = Console(stderr=True, soft_wrap=True, markup=False)

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="TRIAL_ADAPTER_CONFIG",
        help="The adapter's TOML config (see config.example.toml).",
        show_default=True,
    ),
]
SiteOption = Annotated[
    str | None, typer.Option("--site", "-s", help="Only this site id (default: every [[sites]] entry).")
]
DEFAULT_CONFIG = Path("trial-adapter.toml")
ActorOption = Annotated[str | None, typer.Option("--as", help="Who is doing this, for the audit log.")]


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn expected library errors into a message and their exit code."""
    try:
        yield
    except errors.FatalExit as exc:
        print_error(exc.message)
        raise typer.Exit(int(exc.code or 1)) from None
    except errors.AdapterError as exc:
        print_error(str(exc))
        raise typer.Exit(exc.exit_code) from None


def styled(label: str, style: str, text: str) -> Text:
    """``label`` in ``style``, a space, then ``text`` exactly as given."""
    return Text.assemble((label, style), " ", text)


def print_error(message: str) -> None:
    """One red ``error:`` line on stderr, the message verbatim and unwrapped."""
    err_console.print(styled("error:", "red", message), highlight=False)


def load_config(path: Path) -> config_mod.Config:
    return config_mod.load_config(path)


def selected_sites(config: config_mod.Config, site: str | None) -> list[config_mod.SiteConfig]:
    return [config.site(site)] if site else list(config.sites)


def actor_name(given: str | None) -> str:
    """Who is acting, for the audit log: ``--as``, else the operating-system user.

    ``--as`` must follow the one rule for names (``adapter.actors``): it ends
    up in the comment a fix writes into the site's override file, so a line
    break in it would write lines of its own there.  Exit 2 otherwise.
    """
    if given is None:
        return actors.operating_system_actor()
    try:
        return actors.check_actor(given)
    except actors.BadName as exc:
        errors.fatal(f"--as: {exc}", errors.EXIT_USAGE)
