"""Bounds of the console's numeric query and path parameters, in one place.

A number in a URL is typed by whoever sends it.  Unbounded, a page of
9223372036854775807 becomes an OFFSET no database takes, an audit entry id a
lookup the driver refuses to bind, and an age of 10**20 days a ``timedelta``
that overflows: an HTTP 500 each time.  Every numeric parameter is declared
with one of the types below, so FastAPI answers 422 before a view runs; the
limits are far beyond any real use.  ``tests/web/test_limits.py`` walks every
route with extreme values.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import Path, Query, Request

from adapter.reconciliation import issue_query

MAX_PAGE = 1_000_000  # pages of 100 rows: a hundred million issues or audit entries
MAX_ID = 2**31 - 1  # PostgreSQL's INTEGER, the type of the audit log's ids
MAX_AGE_DAYS = issue_query.MAX_AGE_DAYS  # a century

PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE, description="page number, from 1")]
AuditEntryId = Annotated[int, Path(ge=1, le=MAX_ID, description="an audit entry's id")]
MinAgeDays = Annotated[
    int, Query(ge=0, le=MAX_AGE_DAYS, description="only issues open for at least this many days")
]
# A fix job's id (``jobs.JobRunner``: 16 hex digits); anything else is answered 422.
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="a fix job's id")]


def issue_filter(request: Request, min_age_days: MinAgeDays = 0) -> issue_query.IssueFilter:
    """The worklist's filters from the query string (the worklist and its CSV export share them)."""
    return dataclasses.replace(
        issue_query.IssueFilter.from_params(request.query_params), min_age_days=min_age_days
    )
