"""Many new rows of one table in one go: ``COPY`` on PostgreSQL, a bare ``executemany`` on SQLite.

A page of a first sync inserts hundreds of source resources and facts.
psycopg's ``executemany`` sends every row as its own prepared statement
through a pipeline, which at 100k resources cost more than mapping them
(bench/map_bench.py, phase ``pipeline_postgres``); ``COPY ... FROM STDIN``
streams the same rows as one command.  sqlite3's ``executemany`` loops in
C, but SQLAlchemy builds each row's parameters in Python first, which cost
a tenth of a first load; positional rows go to sqlite3 directly.  Either
way in the same transaction, with the same outcome (a duplicate key fails
the whole write, as the same ``IntegrityError``).

The values go through what SQLAlchemy would do to them first: the columns'
Python-side defaults for keys a row leaves out, and each type's bind
processing (``UTCDateTime`` converts to UTC, JSON columns serialise), so a
row written either way reads back the same.  Rows whose keys differ from one
another, short lists and other databases take the ordinary path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

BULK_FROM_ROWS = 20  # below this, the ordinary INSERT is as quick and simpler


def insert_rows(connection: sa.Connection, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts keyed by column key) into ``model``'s table on the connection's transaction."""
    if not rows:
        return
    table: sa.Table = model.__table__
    keys = rows[0].keys()
    dialect = connection.dialect.name
    if (
        dialect not in ("postgresql", "sqlite")
        or len(rows) < BULK_FROM_ROWS
        or any(row.keys() != keys for row in rows)
    ):
        connection.execute(sa.insert(table), list(rows))
    elif dialect == "postgresql":
        _copy(connection, table, rows)
    else:
        _executemany(connection, table, rows)


def _copy(connection: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    columns, makers = _columns_and_makers(table, connection.dialect, rows[0].keys())
    statement = f"COPY {_table_and_columns(connection, table, columns)} FROM STDIN"

    def write(driver: Any) -> None:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([make(row) for make in makers])

    _on_driver(connection, statement, write)


def _executemany(connection: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """One DBAPI ``executemany`` of positional rows: SQLAlchemy's per-row parameter building skipped."""
    columns, makers = _columns_and_makers(table, connection.dialect, rows[0].keys())
    # SQLAlchemy writes the statement; its positional parameters name the columns in order.
    compiled = sa.insert(table).compile(dialect=connection.dialect, column_keys=[c.key for c in columns])
    statement = str(compiled)
    maker_of = {column.key: make for column, make in zip(columns, makers, strict=True)}
    ordered = [maker_of[key] for key in compiled.positiontup or ()]
    values = [tuple([make(row) for make in ordered]) for row in rows]

    def write(driver: Any) -> None:
        cursor = driver.cursor()
        try:
            cursor.executemany(statement, values)
        finally:
            cursor.close()

    _on_driver(connection, statement, write)


def _table_and_columns(connection: sa.Connection, table: sa.Table, columns: list[sa.Column[Any]]) -> str:
    quote = connection.dialect.identifier_preparer
    return f"{quote.format_table(table)} ({', '.join(quote.quote(column.name) for column in columns)})"


def _on_driver(connection: sa.Connection, statement: str, write: Callable[[Any], None]) -> None:
    """``write(driver connection)`` in the connection's transaction; its errors as SQLAlchemy's."""
    dialect = connection.dialect
    driver = connection.connection.driver_connection
    if driver is None:  # pragma: no cover - a connection inside a transaction is live
        raise RuntimeError("no database connection to write on")
    try:
        write(driver)
    except dialect.loaded_dbapi.Error as failure:
        # As SQLAlchemy raises it for an executemany: IntegrityError, OperationalError, ...
        raise sa.exc.DBAPIError.instance(statement, None, failure, dialect.loaded_dbapi.Error) from failure


def _columns_and_makers(
    table: sa.Table, dialect: sa.Dialect, given: Any
) -> tuple[list[sa.Column[Any]], list[Callable[[dict[str, Any]], Any]]]:
    """The columns a row fills (given, or with a Python-side default) and how to make each value."""
    columns = [column for column in table.columns if column.key in given or _python_default(column)]
    return columns, [_value_maker(column, dialect, column.key in given) for column in columns]


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
