"""A sync pass's outcome as a person should read it.

A pass writes ``running`` into its ``SyncRun`` row when it starts and its
real outcome when it ends; a process killed in between (kill -9, power cut)
leaves ``running`` behind for ever.  ``status``, the console and the metrics
all show runs, so they ask here rather than each read the raw column.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.store import locks, models


def shown_outcome(session: Session, run: models.SyncRun) -> str:
    """The run's outcome; ``interrupted`` for one marked running whose process is gone.

    A pass holds its site's lock from before its row is written until after
    it is closed.  So when nobody alive holds the lock, the row is read again:
    still ``running`` means its process died; anything else means it finished
    between the two reads.
    """
    if run.outcome != "running":
        return run.outcome
    bind = session.get_bind()
    if locks.held_by_live_holder(bind.engine if isinstance(bind, sa.Connection) else bind, run.site):
        return run.outcome
    now = session.scalar(sa.select(models.SyncRun.outcome).where(models.SyncRun.id == run.id))
    return "interrupted" if now in (None, "running") else now
