"""``trial-adapter issues``: the data manager's worklist on the command line.

``list`` finds issues with the console's own query
(``adapter.reconciliation.issue_query``), so a site, kind or status filter
picks the same issues in both.
"""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
import typer
from rich.markup import escape
from rich.table import Table

from adapter import errors
from adapter.cli import common
from adapter.mapping.issues import GUIDANCE, IssueKind
from adapter.reconciliation import fixes, issue_query
from adapter.store import db, models

app = typer.Typer(help="List, show and ignore mapping issues.", no_args_is_help=True)

StatusOption = Annotated[str, typer.Option("--status", help="open, resolved, ignored or all.")]


@app.command("list")
def list_issues(
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    site_id: common.SiteOption = None,
    kind: Annotated[
        str | None, typer.Option("--kind", "-k", help="Only this issue kind, e.g. unknown_code.")
    ] = None,
    status: StatusOption = "open",
    limit: Annotated[int, typer.Option("--limit", help="At most this many rows.")] = 200,
) -> None:
    """List issues with their kind, subject and explanation."""
    with common.reported_errors():
        config = common.load_config(config_path)
        sessions = db.open_store(config.store.url)
        filt = issue_query.IssueFilter(site=site_id or "", kind=kind or "", status=status)
        with sessions() as session:
            rows = issue_query.issue_rows(session, filt, order=issue_query.Order.BY_KEY, limit=limit)
        table = Table(title=f"Issues ({status})", title_justify="left")
        for column in ("key", "subject", "detail"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(escape(row.key), row.subject_id or "-", escape(row.detail))
        common.console.print(table)


@app.command("show")
def show_issue(key: str, config_path: common.ConfigOption = common.DEFAULT_CONFIG) -> None:
    """Everything known about one issue, including which sources raise it."""
    with common.reported_errors():
        config = common.load_config(config_path)
        sessions = db.open_store(config.store.url)
        with sessions() as session:
            row = session.get(models.IssueRow, key)
            if row is None:
                errors.fatal(
                    f"no issue with key {key!r}; `trial-adapter issues list` shows the keys",
                    errors.EXIT_USAGE,
                )
            sources = session.scalars(
                sa.select(models.IssueSource.source).where(models.IssueSource.issue_key == key)
            )
            for field in (
                "key",
                "kind",
                "status",
                "subject_id",
                "concept",
                "code",
                "unit",
                "value",
                "detail",
                "reason",
            ):
                common.console.print(
                    f"[bold]{field}:[/bold] {escape(str(getattr(row, field)))}", highlight=False
                )
            common.console.print(
                f"[bold]raised by:[/bold] {', '.join(sources) or '(nothing now)'}", highlight=False
            )
            guidance = GUIDANCE.get(IssueKind(row.kind)) if row.kind in set(IssueKind) else None
            if guidance:
                common.console.print(
                    f"[bold]what usually resolves it:[/bold] {escape(guidance)}", highlight=False
                )


@app.command("ignore")
def ignore_issue(
    key: str,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why this needs no fix (kept in the audit log).")
    ],
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    actor: common.ActorOption = None,
) -> None:
    """Mark an issue as needing no fix; the reason is required and audited.

    The audit names ``--as`` if given, else ``cli:<operating-system user>``,
    as every other command that changes something does.
    """
    who = common.actor_name(actor)
    with common.reported_errors():
        config = common.load_config(config_path)
        result = fixes.ignore_issue(db.open_store(config.store.url), key, reason, actor=who)
        common.console.print(result.summary, highlight=False)
