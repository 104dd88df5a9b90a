"""A page's issues written in bulk keep the lifecycle of writing them one source at a time.

Each test runs on SQLite and on PostgreSQL (``store_url``): the bulk write is
an ``INSERT ... ON CONFLICT DO UPDATE`` in each dialect.  The same sequence
of pages goes through ``state.replace_issues`` one source at a time (site
``one``) and through a ``PageRows`` page (site ``page``); the issues, their
statuses and their sources must come out the same after every page.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter.mapping.issues import IssueKind, MappingIssue
from adapter.store import db, models, state

# One page: (source, the issues it raises now as (kind, scope, detail), known before).
Page = list[tuple[str, list[tuple[IssueKind, str, str]], bool]]

FIRST: Page = [
    (
        "Observation/a",
        [
            (IssueKind.UNKNOWN_CODE, "code:local|X", "X"),
            (IssueKind.IMPLAUSIBLE_VALUE, "Observation/a", "high"),
        ],
        False,
    ),
    ("Observation/b", [(IssueKind.UNKNOWN_CODE, "code:local|X", "X again")], False),
    ("Observation/c", [], False),
]
SECOND: Page = [
    ("Observation/a", [], True),  # fixed at the site
    ("Observation/b", [(IssueKind.UNKNOWN_CODE, "code:local|X", "X, later")], True),
    ("Observation/c", [(IssueKind.IMPLAUSIBLE_VALUE, "Observation/c", "low")], True),
    ("Observation/c", [], True),  # a second copy in the same page: the last one counts
    ("Observation/d", [(IssueKind.IMPLAUSIBLE_VALUE, "Observation/d", "low")], False),
]
THIRD: Page = [
    ("Observation/a", [(IssueKind.IMPLAUSIBLE_VALUE, "Observation/a", "high again")], True),  # back
    ("Observation/b", [], True),
]


def _issues(site: str, raised: list[tuple[IssueKind, str, str]]) -> list[MappingIssue]:
    return [MappingIssue(site=site, kind=kind, scope=scope, detail=detail) for kind, scope, detail in raised]


def _apply(session: Session, site: str, page: Page, *, batched: bool) -> None:
    rows = state.PageRows() if batched else None
    for source, raised, known in page:
        state.replace_issues(session, site, source, _issues(site, raised), known=known, page=rows)
    if rows is not None:
        rows.write(session)
    state.resolve_orphaned_issues(session, site)


def _state(session: Session, site: str) -> tuple[list[tuple[Any, ...]], list[tuple[str, str]]]:
    issues = session.scalars(sa.select(models.IssueRow).where(models.IssueRow.site == site))
    sources = session.execute(
        sa.select(models.IssueSource.issue_key, models.IssueSource.source).where(
            models.IssueSource.site == site
        )
    )
    return (
        sorted(
            (
                i.kind,
                i.scope,
                i.detail,
                i.status,
                i.reason,
                i.resolved_at is None,
                i.first_seen <= i.last_seen,
            )
            for i in issues
        ),
        sorted((key.partition("|")[2], source) for key, source in sources),
    )


def _first_seen(session: Session, site: str, scope: str) -> Any:
    return session.scalar(
        sa.select(models.IssueRow.first_seen).where(
            models.IssueRow.site == site, models.IssueRow.scope == scope
        )
    )


def test_a_page_written_in_bulk_has_the_issues_of_one_source_at_a_time(store_url: str) -> None:
    sessions = db.open_store(store_url)
    for site, batched in (("one", False), ("page", True)):
        with sessions.begin() as session:
            _apply(session, site, FIRST, batched=batched)
    with sessions() as session:
        assert _state(session, "one") == _state(session, "page")
        issues, sources = _state(session, "page")
        assert [(kind, scope, status) for kind, scope, _d, status, *_ in issues] == [
            ("implausible_value", "Observation/a", "open"),
            ("unknown_code", "code:local|X", "open"),
        ]
        assert sources == [
            ("implausible_value|Observation/a", "Observation/a"),
            ("unknown_code|code:local|X", "Observation/a"),
            ("unknown_code|code:local|X", "Observation/b"),
        ]
        first_seen = {site: _first_seen(session, site, "Observation/a") for site in ("one", "page")}

    with sessions.begin() as session:  # a data manager ignores the unknown code
        session.execute(
            sa.update(models.IssueRow)
            .where(models.IssueRow.kind == IssueKind.UNKNOWN_CODE.value)
            .values(status="ignored", reason="a local screening test")
        )
    for site, batched in (("one", False), ("page", True)):
        with sessions.begin() as session:
            _apply(session, site, SECOND, batched=batched)
    with sessions() as session:
        assert _state(session, "one") == _state(session, "page")
        issues, sources = _state(session, "page")
        statuses = {scope: (detail, status, reason) for _k, scope, detail, status, reason, *_ in issues}
        assert statuses == {
            "Observation/a": ("high", "resolved", None),  # its last source stopped raising it
            "Observation/c": ("low", "resolved", None),  # raised by a copy a later copy replaced
            "code:local|X": ("X, later", "ignored", "a local screening test"),  # stays ignored
            "Observation/d": ("low", "open", None),
        }
        assert sources == [
            ("implausible_value|Observation/d", "Observation/d"),
            ("unknown_code|code:local|X", "Observation/b"),
        ]

    for site, batched in (("one", False), ("page", True)):
        with sessions.begin() as session:
            _apply(session, site, THIRD, batched=batched)
    with sessions() as session:
        assert _state(session, "one") == _state(session, "page")
        issues, _sources = _state(session, "page")
        reopened = [i for i in issues if i[1] == "Observation/a"]
        assert reopened == [("implausible_value", "Observation/a", "high again", "open", None, True, True)], (
            "a resolved issue that comes back reopens"
        )
        for site in ("one", "page"):
            assert _first_seen(session, site, "Observation/a") == first_seen[site]


def test_a_page_raising_an_issue_twice_writes_it_once(store_url: str) -> None:
    sessions = db.open_store(store_url)
    with sessions.begin() as session:
        _apply(session, "page", FIRST, batched=True)
    with sessions.begin() as session:  # the same page again: a resumed sync after a crash
        _apply(session, "page", [(s, raised, True) for s, raised, _known in FIRST], batched=True)
    with sessions() as session:
        issues, sources = _state(session, "page")
        assert len(issues) == 2 and len(sources) == 3


def test_an_issue_loaded_earlier_in_the_transaction_reads_what_was_written(store_url: str) -> None:
    """The bulk upsert bypasses the ORM; an ``IssueRow`` the session already holds must not stay stale."""
    sessions = db.open_store(store_url)
    raised = [(IssueKind.DELIVERY_FAILED, "outbox:7", "failed 3 times")]
    with sessions.begin() as session:
        state.replace_issues(session, "s", "outbox:7", _issues("s", raised))
    key = _issues("s", raised)[0].key
    with sessions.begin() as session:
        row = session.get(models.IssueRow, key)
        assert row is not None and (row.status, row.detail) == ("open", "failed 3 times")
        row.status = "resolved"  # a person resolves it, in the same transaction as a new failure
        again = [(IssueKind.DELIVERY_FAILED, "outbox:7", "failed 4 times")]
        state.replace_issues(session, "s", "outbox:7", _issues("s", again))
        assert session.get(models.IssueRow, key) is row
        assert (row.status, row.detail) == ("open", "failed 4 times"), "the problem is back: it reopens"
    with sessions() as session:
        stored = session.get(models.IssueRow, key)
        assert stored is not None and (stored.status, stored.detail) == ("open", "failed 4 times")
