"""``trial-adapter check``: would a sync work, and if not, what to fix.

What is checked, in which order, and what each check found is decided by
``adapter.service.checks``; this module only prints it: a table of every
check, then each failure with its fix, then each warning that asks for
something to be done, and exits with the first failure's exit code.
"""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from adapter.cli import common
from adapter.service import checks

_COLOURS = {checks.Outcome.OK: "green", checks.Outcome.WARN: "yellow", checks.Outcome.FAIL: "red"}


def check(config_path: common.ConfigOption = common.DEFAULT_CONFIG) -> None:
    """Validate the config, mapping files, rosters, secret, sources and the trial repository.

    Loads everything a sync would load and reports each site as ok or with the
    error and its fix, without changing any state.  The trial repository is
    tried without writing to it: a FHIR server's metadata and a count-only
    search with the credentials, REDCap's version export with the token, a
    HEAD on an http endpoint, a temporary file in a file repository's folder
    (exit 7 when it fails).  A warning names `trial-adapter push --resend`
    when [repository] changed and the new one lacks current records.
    """
    with common.reported_errors():
        config = common.load_config(config_path)
        report = checks.run_checks(config)
        print_checks(report)
        if report.failures:
            raise typer.Exit(report.exit_code)


def print_checks(report: checks.CheckReport) -> None:
    """The table of checks, then what failed and what needs doing, one line each."""
    table = Table(title="Check", title_justify="left")
    for column in ("site", "item", "result"):
        table.add_column(column, overflow="fold")
    for found in report.checks:
        table.add_row(found.site, found.item, _result(found))
    common.console.print(table)
    for found in report.failures:
        common.console.print(common.styled("✗", "red", found.message), highlight=False, soft_wrap=True)
    for found in report.checks:
        if found.outcome is checks.Outcome.WARN and found.message:
            common.console.print(common.styled("!", "yellow", found.message), highlight=False, soft_wrap=True)


def _result(found: checks.Check) -> Text:
    verdict = Text(found.label or found.outcome.value, style=_COLOURS[found.outcome])
    if found.failed or not found.detail:
        return verdict
    return Text.assemble(verdict, f" ({found.detail})")
