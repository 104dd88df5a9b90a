"""Source pages joined into the sync's unit of commit (adapter/sync/batches.py).

The joined page must keep every promise a single page makes: resume where
its last page does, vouch for the first watermark, and apply a page's
deletions after that page's resources and before any later page's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapter.fhir.source import BadLine, Page, SourceLine
from adapter.store import bulk_insert, db, models, state, value_lists
from adapter.sync.batches import join_pages
from adapter.sync.runs import SyncStopped

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def page(
    number: int, size: int, *, deleted: tuple[str, ...] = (), watermark: dt.datetime | None = T0
) -> Page:
    lines: list[SourceLine | BadLine] = [
        SourceLine("Observation", {"resourceType": "Observation", "id": f"p{number}-{i}"}, f"page {number}")
        for i in range(size)
    ]
    return Page(lines=lines, cursor=f"after-{number}", watermark=watermark, deleted=list(deleted))


def ids(joined: Page) -> list[str]:
    return [line.resource["id"] for line in joined.lines if isinstance(line, SourceLine)]


def never() -> bool:
    return False


def test_pages_are_joined_until_enough_resources_and_resume_after_their_last_page() -> None:
    pages = [page(n, 3) for n in range(1, 6)]
    joined = list(join_pages(pages, 5, never))
    assert [len(j.lines) for j in joined] == [6, 6, 3]
    assert [j.cursor for j in joined] == ["after-2", "after-4", "after-5"]
    assert [i for j in joined for i in ids(j)] == [i for p in pages for i in ids(p)]  # all, in order


def test_one_resource_per_commit_keeps_the_source_pages() -> None:
    pages = [page(n, 3) for n in range(1, 4)]
    assert list(join_pages(pages, 1, never)) == pages


def test_the_watermark_is_the_first_one_a_page_vouched_for() -> None:
    later = T0 + dt.timedelta(hours=1)
    pages = [page(1, 2, watermark=None), page(2, 2, watermark=later), page(3, 2, watermark=T0)]
    (joined,) = join_pages(pages, 100, never)
    assert joined.watermark == later


def test_a_page_reporting_deletions_ends_the_joined_page() -> None:
    """Deletions go after their own page's resources and before any later page's, as alone."""
    pages = [page(1, 2), page(2, 2, deleted=("Observation/gone",)), page(3, 2)]
    first, second = join_pages(pages, 100, never)
    assert ids(first) == ["p1-0", "p1-1", "p2-0", "p2-1"]
    assert first.deleted == ["Observation/gone"] and first.cursor == "after-2"
    assert ids(second) == ["p3-0", "p3-1"] and second.deleted == []


def test_an_empty_page_still_moves_the_cursor_and_no_page_gives_nothing() -> None:
    (joined,) = join_pages([page(1, 0)], 100, never)
    assert joined.lines == [] and joined.cursor == "after-1"
    assert list(join_pages([], 100, never)) == []


def test_a_stop_request_is_honoured_between_source_pages() -> None:
    read: list[int] = []

    def pages() -> Iterator[Page]:
        for n in range(1, 10):
            read.append(n)
            yield page(n, 3)

    stop_after = iter([False, False, True])
    with pytest.raises(SyncStopped):
        list(join_pages(pages(), 100, lambda: next(stop_after)))
    assert read == [1, 2, 3]  # no page read after the request, none committed either


def test_progress_is_told_as_each_source_page_arrives() -> None:
    """A progress bar over a slow EHR moves with every answer, not only at each commit."""
    told: list[int] = []
    joined: list[int] = []
    for page_ in join_pages((page(n, 3) for n in range(1, 6)), 100, never, told.append):
        joined.append(len(page_.lines))
    assert told == [3, 3, 3, 3, 3] and joined == [15]


def test_a_joined_page_finds_every_stored_resource_across_id_chunks(tmp_path: Path) -> None:
    """A joined page may name tens of thousands of ids: looked up a few hundred per query."""
    sessions = db.open_store(f"sqlite:///{tmp_path / 'state.db'}")
    count = value_lists.IDS_PER_QUERY * 2 + 7
    rows = [
        {
            "site": "s",
            "resource_type": "Observation",
            "resource_id": f"o{n}",
            "version": "v:1",
            "raw": "{}",
            "catalog_version": "c",
            "outcome": "deleted" if n % 10 == 0 else "mapped",
            "last_seen_run": 1,
        }
        for n in range(count)
    ]
    with sessions.begin() as session:
        bulk_insert.insert_rows(session.connection(), models.SourceResource, rows)
    asked = [f"o{n}" for n in range(count + 50)]  # 50 never stored
    with sessions() as session:
        every = state.stored_sources(session, "s", "Observation", asked)
        live = state.stored_sources(session, "s", "Observation", asked, include_deleted=False)
        other = state.stored_sources(session, "s", "Procedure", asked)
    assert sorted(r.resource_id for r in every) == sorted(f"o{n}" for n in range(count))
    assert len(live) == count - len(range(0, count, 10)) and other == []
