"""``--format table|csv|json``: one way for a listing command to print for people or scripts.

A table is for reading in a terminal; its cells wrap (``overflow="fold"``)
rather than end in an ellipsis, so a long local code is never cut at any
width.  CSV (one header row, one row per item) and JSON (an array of
objects, the same keys in the same order on every item) go to stdout
unstyled and unwrapped, so a script can read every field exactly as stored.
Values are written as they are: a CSV meant for a spreadsheet should be
opened with its import dialog, since a hospital's display text may start
with ``=``.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
from collections.abc import Mapping, Sequence
from typing import Annotated

import orjson
import typer

Item = Mapping[str, object]


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


FormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        case_sensitive=False,
        help="table (for reading), csv (header row, one row per item) or json (an array of objects).",
    ),
]


def chosen(output: OutputFormat, as_json: bool) -> OutputFormat:
    """``--format``, with the older ``--json`` as another way to say ``--format json``."""
    if as_json and output is OutputFormat.CSV:
        raise typer.BadParameter("--json is --format json; give one of them", param_hint="--json")
    return OutputFormat.JSON if as_json else output


def utc_iso(moment: dt.datetime | None) -> str | None:
    """``2025-01-03T04:27:00Z``: the moment in UTC, to the second (the status command's form)."""
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def echo_items(output: OutputFormat, fields: Sequence[str], items: Sequence[Item]) -> None:
    """Print ``items`` (each with exactly ``fields``) as CSV or JSON on stdout."""
    if output is OutputFormat.CSV:
        typer.echo(_csv(fields, items), nl=False)
    elif output is OutputFormat.JSON:
        rows = [{field: item[field] for field in fields} for item in items]
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    else:
        raise ValueError(f"{output.value} is printed as a table by the command itself")


def _csv(fields: Sequence[str], items: Sequence[Item]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fields)
    for item in items:
        writer.writerow(["" if item[field] is None else item[field] for field in fields])
    return buffer.getvalue()
