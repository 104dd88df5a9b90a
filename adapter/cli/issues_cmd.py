"""``trial-adapter issues``: the data manager's worklist on the command line.

``list`` finds issues with the console's own query
(``adapter.reconciliation.issue_query``), so a site, kind or status filter
picks the same issues in both; it prints a table to read, or CSV or JSON
for a script (``formats``).  An open ``unknown_code`` issue also shows the
concepts its code probably means (``reconciliation.suggestions``); ``show``
gives their evidence and ``trial-adapter map accept`` accepts one.
"""

from __future__ import annotations

import shlex
from typing import Annotated

import orjson
import sqlalchemy as sa
import typer
from rich.table import Table
from sqlalchemy.orm import Session

from adapter import errors
from adapter.cli import common, formats
from adapter.mapping.issues import GUIDANCE, IssueKind
from adapter.reconciliation import fixes, issue_query, suggestions
from adapter.store import db, models

app = typer.Typer(help="List, show and ignore mapping issues.", no_args_is_help=True)

StatusOption = Annotated[str, typer.Option("--status", help="open, resolved, ignored or all.")]
# What csv and json hold for each issue.  The subject is the trial's
# pseudonymous subject id; nothing names or identifies a patient.
FIELDS = (
    "key",
    "site",
    "kind",
    "status",
    "subject",
    "concept",
    "code",
    "unit",
    "value",
    "message",
    "reason",
    "sources",
    "first_seen",
    "last_seen",
    "resolved_at",
    "suggestions",
)


@app.command("list")
def list_issues(
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    site_id: common.SiteOption = None,
    kind: Annotated[
        str | None, typer.Option("--kind", "-k", help="Only this issue kind, e.g. unknown_code.")
    ] = None,
    status: StatusOption = "open",
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many issues.")] = 200,
    output: formats.FormatOption = formats.OutputFormat.TABLE,
) -> None:
    """List issues with their kind, subject and explanation.

    \b
    --format table (the default) wraps long keys and codes inside their cell, never cuts them.
    --format csv: a header row, then one row per issue with every field:
      key,site,kind,status,subject,concept,code,unit,value,message,reason,
      sources,first_seen,last_seen,resolved_at,suggestions
    --format json: an array of objects with the same fields, e.g.
      trial-adapter issues list --kind unknown_code --format json | jq -r '.[].code'
    subject is the trial's pseudonymous subject id (none for an issue of a
    code rather than a subject), sources how many resources raise the issue
    now, times are ISO 8601 in UTC.  suggestions, for an open unknown_code
    issue, is a list of {concept, score, evidence} (best first; empty when
    no concept fits; in CSV written as JSON), none for other issues; the
    table shows the best one.  When more than --limit issues match, a note
    on stderr says so.
    """
    if status not in issue_query.STATUSES:
        raise typer.BadParameter(
            f"{status!r}: use one of {', '.join(issue_query.STATUSES)}", param_hint="--status"
        )
    with common.reported_errors():
        config = common.load_config(config_path)
        sessions = db.open_store(config.store.url)
        filt = issue_query.IssueFilter(site=site_id or "", kind=kind or "", status=status)
        with sessions() as session:
            rows = issue_query.issue_rows(session, filt, order=issue_query.Order.BY_KEY, limit=limit + 1)
            more, rows = len(rows) > limit, rows[:limit]
            suggested = suggestions.suggestions_for(config, session, rows)
            items = _items(session, rows, suggested) if output is not formats.OutputFormat.TABLE else []
    if output is formats.OutputFormat.TABLE:
        _print_table(rows, status, suggested)
    else:
        if output is formats.OutputFormat.CSV:  # a list has no CSV cell of its own: JSON text
            items = [{**item, "suggestions": _json_text(item["suggestions"])} for item in items]
        formats.echo_items(output, FIELDS, items)
    if more:
        common.err_console.print(
            f"More than {limit} issues match; only the first {limit} are listed (--limit raises it).",
            highlight=False,
        )


def _items(
    session: Session, rows: list[models.IssueRow], suggested: dict[str, list[suggestions.IssueSuggestion]]
) -> list[dict[str, object]]:
    sources = issue_query.source_counts(session, [row.key for row in rows])
    return [
        {
            "key": row.key,
            "site": row.site,
            "kind": row.kind,
            "status": row.status,
            "subject": row.subject_id,
            "concept": row.concept,
            "code": row.code,
            "unit": row.unit,
            "value": row.value,
            "message": row.detail,
            "reason": row.reason,
            "sources": sources.get(row.key, 0),
            "first_seen": formats.utc_iso(row.first_seen),
            "last_seen": formats.utc_iso(row.last_seen),
            "resolved_at": formats.utc_iso(row.resolved_at),
            "suggestions": ([s.as_item() for s in suggested[row.key]] if row.key in suggested else None),
        }
        for row in rows
    ]


def _json_text(value: object) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _print_table(
    rows: list[models.IssueRow], status: str, suggested: dict[str, list[suggestions.IssueSuggestion]]
) -> None:
    table = Table(title=f"Issues ({status})", title_justify="left")
    for column in ("key", "subject", "detail", "suggestion"):
        table.add_column(column, overflow="fold")
    for row in rows:
        best = suggested.get(row.key) or []
        shown = f"{best[0].concept} ({best[0].percent} %)" if best else "-"
        table.add_row(row.key, row.subject_id or "-", row.detail, shown)
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
            sources = list(
                session.scalars(
                    sa.select(models.IssueSource.source).where(models.IssueSource.issue_key == key)
                )
            )
            suggested = suggestions.suggestions_for(config, session, [row])
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
        _show(field, str(getattr(row, field)))
    _show("raised by", ", ".join(sources) or "(nothing now)")
    guidance = GUIDANCE.get(IssueKind(row.kind)) if row.kind in set(IssueKind) else None
    if guidance:
        _show("what usually resolves it", guidance)
    if row.key in suggested:
        _show_suggestions(row, suggested[row.key])


def _show_suggestions(row: models.IssueRow, found: list[suggestions.IssueSuggestion]) -> None:
    if not found:
        _show("suggestions", "none: no concept's name matches what the site calls this code")
        return
    accept = f"trial-adapter map accept {shlex.quote(row.key)}"
    hint = f"accept the first with `{accept}`, another with --concept CONCEPT"
    common.console.print(common.styled("suggestions:", "bold", hint), highlight=False, soft_wrap=True)
    for rank, suggestion in enumerate(found, start=1):
        line = f"  {rank}. {suggestion.concept} ({suggestion.label}), {suggestion.percent} %"
        common.console.print(line, highlight=False, soft_wrap=True)
        for sentence in suggestion.evidence:
            common.console.print(f"     - {sentence}", highlight=False, soft_wrap=True)


def _show(label: str, text: str) -> None:
    common.console.print(common.styled(f"{label}:", "bold", text), highlight=False)


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
