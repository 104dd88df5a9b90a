"""Source pages joined into the sync's unit of commit: a few thousand resources, not one page.

A commit is the dearest step of storing a page: its rows' index pages are
written to the journal, and every few commits checkpointed with a flush
to disk.  Resource ids are random, so a page of 500 resources touches
about as many index pages as a page of 2,000, and committing source pages
one by one cost about 15 % of a first load at 1,000 patients
(bench/memory_bench.py; a REST page is only ``page_size`` = 100 resources).
Joining consecutive pages until ``[sync] resources_per_commit`` resources
are read commits a quarter as often, for the memory of those resources.

The joined page keeps every promise of a single page (``adapter.fhir.source``):

- it resumes where its last page does, so a crash re-reads at most one
  joined page, and never skips one;
- its watermark is the first one a page vouched for;
- a page that reports deletions ends it, so those deletions are applied
  after that page's resources and before any later page's, as they would
  be alone (a resource deleted and created again within a pass stays).

No transaction is open while the pages are read: a slow EHR never holds
the state database's write lock.  A stop request is honoured between
pages; what was read and not committed is read again on the next pass.
Progress is told as each source page arrives, so a progress bar over a
slow EHR moves with every answer, not every few dozen.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator

from adapter.fhir.source import BadLine, Page, SourceLine
from adapter.sync.runs import Progress, StopCheck, SyncStopped


def join_pages(
    pages: Iterable[Page], at_least: int, should_stop: StopCheck, progress: Progress | None = None
) -> Iterator[Page]:
    """``pages`` joined in order into pages of ``at_least`` lines (the last one may hold fewer).

    ``progress`` is told each source page's lines as the page is read.
    """
    lines: list[SourceLine | BadLine] = []
    watermark: dt.datetime | None = None
    cursor: str | None = None
    pending = False  # pages read and not yet handed on
    for page in pages:
        if should_stop():
            raise SyncStopped
        lines.extend(page.lines)
        if progress:
            progress(len(page.lines))
        watermark = watermark or page.watermark
        cursor, pending = page.cursor, True
        if len(lines) >= at_least or page.deleted:
            yield Page(lines=lines, cursor=cursor, watermark=watermark, deleted=page.deleted)
            lines, watermark, pending = [], None, False
    if pending:
        yield Page(lines=lines, cursor=cursor, watermark=watermark)
