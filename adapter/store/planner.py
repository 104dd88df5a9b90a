"""PostgreSQL's planner statistics kept current while a pass loads rows.

PostgreSQL plans every query from table statistics that autovacuum refreshes
at most about once a minute, and only after a table grew by a fifth.  A first
sync loads tens of thousands of rows a minute into tables the planner still
believes empty, and then looks a page's stored versions up by reading every
stored row of the type instead of going through the primary key (measured at
100k resources: 0.22 s per page, two thirds of the whole sync; a subject's
facts were read the same way).  The manual's advice for bulk loads is to run
``ANALYZE`` afterwards; a pass does it as it goes, each time the rows it has
written doubled since the last time, so a million rows cost about ten
``ANALYZE`` runs of a bounded sample each.  An incremental pass that writes a
few hundred rows never runs one (autovacuum keeps up with that).

Those runs sample a tenth of the usual rows (``STATISTICS_TARGET``): what
the planner lacks during a load is the tables' sizes, not fine value
distributions, and the default sample of 30,000 rows per table made the
runs an eighth of a first load's time on PostgreSQL (measured at 100k
resources: 2.3 s against 0.3 s, with the same plans).  Autovacuum's own
later ANALYZE takes the full sample again.

SQLite is left alone: its planner takes the primary key and the indexes
without statistics, and its ``ANALYZE`` would only cost time.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

# The tables a pass writes in bulk and then queries by key.
TABLES = (
    "source_resources",
    "facts",
    "issue_sources",
    "patient_links",
    "dirty_subjects",
    "records",
    "outbox",
)
STATISTICS_TARGET = 10  # PostgreSQL's default_statistics_target is 100
FIRST_AFTER = 2000  # rows written before the first ANALYZE of a pass


class Statistics:
    """One pass's count of rows written, and the ANALYZE it triggers on PostgreSQL."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        bind = sessions.kw.get("bind")
        self.sessions = sessions
        self.enabled = bind is not None and bind.dialect.name == "postgresql"
        self.written = 0
        self.analyze_at = FIRST_AFTER
        self.runs = 0

    def wrote(self, rows: int) -> None:
        """``rows`` more rows were committed; ANALYZE once they doubled since the last time.

        Runs in its own short transaction after the caller's commit, so the
        lock ANALYZE takes (which only other ANALYZE and schema changes wait
        for) is never held across a page's writes.
        """
        if not self.enabled or rows <= 0:
            return
        self.written += rows
        if self.written < self.analyze_at:
            return
        with self.sessions.begin() as session:
            session.execute(sa.text(f"SET LOCAL default_statistics_target = {STATISTICS_TARGET}"))
            session.execute(sa.text(f"ANALYZE {', '.join(TABLES)}"))
        self.analyze_at = 2 * self.written
        self.runs += 1
        log.debug("planner statistics refreshed", extra={"rows_written": self.written})
