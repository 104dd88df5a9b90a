"""Asking for rows whose column is one of many values, in queries any store accepts.

The sync looks rows up by id a commit at a time: a few thousand stored
resources, a batch of subjects, a batch of delivered outbox items.  One
``IN (...)`` list of that many parameters would pass SQLite's limit on bound
parameters, so elsewhere the values go in lists of ``IDS_PER_QUERY``.  On
PostgreSQL they go as one array parameter (``column = ANY(:values)``): an IN
list of a few hundred parameters cost about ten milliseconds per query to
send and plan there (bench/map_bench.py, phase ``pipeline_postgres``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

IDS_PER_QUERY = 500  # values per IN (...): far below SQLite's and PostgreSQL's parameter limits


def among_values(session: Session, column: Any, values: Sequence[Any]) -> list[sa.ColumnElement[bool]]:
    """Conditions that ``column`` is one of ``values``: run one query (or statement) per condition.

    No values, no condition: the caller runs nothing.
    """
    if not values:
        return []
    if session.get_bind().dialect.name == "postgresql":
        array = sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        return [column == sa.any_(array)]
    return [
        column.in_(values[start : start + IDS_PER_QUERY]) for start in range(0, len(values), IDS_PER_QUERY)
    ]
