"""Many new rows of one table in one go: ``COPY`` on PostgreSQL, ``executemany`` elsewhere.

A page of a first sync inserts hundreds of source resources and facts.
sqlite3's ``executemany`` loops in C; psycopg's sends every row as its own
prepared statement through a pipeline, which at 100k resources cost more
than mapping them (bench/map_bench.py, phase ``pipeline_postgres``).
``COPY ... FROM STDIN`` streams the same rows as one command, in the same
transaction, with the same outcome (a duplicate key fails the whole COPY as
it fails the whole executemany).

The values go through what SQLAlchemy would do to them first: the columns'
Python-side defaults for keys a row leaves out, and each type's bind
processing (``UTCDateTime`` converts to UTC, JSON columns serialise), so a
row written either way reads back the same.  Rows whose keys differ from one
another, and short lists, take the ordinary path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

COPY_FROM_ROWS = 20  # below this, one executemany is as quick and simpler


def insert_rows(connection: sa.Connection, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts keyed by column key) into ``model``'s table on the connection's transaction."""
    if not rows:
        return
    table: sa.Table = model.__table__
    keys = rows[0].keys()
    if (
        connection.dialect.name != "postgresql"
        or len(rows) < COPY_FROM_ROWS
        or any(row.keys() != keys for row in rows)
    ):
        connection.execute(sa.insert(table), list(rows))
        return
    _copy(connection, table, rows)


def _copy(connection: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    dialect = connection.dialect
    given = rows[0].keys()
    columns = [column for column in table.columns if column.key in given or _python_default(column)]
    makers = [_value_maker(column, dialect, column.key in given) for column in columns]
    quote = dialect.identifier_preparer
    names = ", ".join(quote.quote(column.name) for column in columns)
    statement = f"COPY {quote.format_table(table)} ({names}) FROM STDIN"
    driver = connection.connection.driver_connection
    if driver is None:  # pragma: no cover - a connection inside a transaction is live
        raise RuntimeError("no database connection to COPY on")
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([make(row) for make in makers])
    except dialect.loaded_dbapi.Error as failure:
        # As SQLAlchemy raises it for an executemany: IntegrityError, OperationalError, ...
        raise sa.exc.DBAPIError.instance(statement, None, failure, dialect.loaded_dbapi.Error) from failure


def _python_default(column: sa.Column[Any]) -> bool:
    default = column.default
    return default is not None and (default.is_scalar or default.is_callable)


def _value_maker(column: sa.Column[Any], dialect: sa.Dialect, given: bool) -> Callable[[dict[str, Any]], Any]:
    """The function giving a row's value of ``column``, as SQLAlchemy would bind it."""
    process = column.type.bind_processor(dialect)
    key = column.key
    if given:
        if process is None:
            return lambda row: row[key]
        return lambda row: process(row[key])
    default: Any = column.default
    produce = (lambda: default.arg(None)) if default.is_callable else (lambda: default.arg)
    if process is None:
        return lambda row: produce()
    return lambda row: process(produce())
