"""The words of a REST search: escaped tokens, ``_lastUpdated`` values, plan fingerprints, cursors.

Pure functions of their arguments, shared by the REST source
(``adapter.fhir.rest``) and the server probe (``adapter.fhir.probe``), so a
probe asks exactly what a sync would.  A ``PassCursor`` is the JSON a REST
page hands on as its resume point: the query plan's fingerprint, the query
index, the next link and the server's time when the pass began.  A cursor of
another version or another plan is not used: the type is read again from
its start, which only costs time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson

from adapter import roster as roster_mod
from adapter.fhir import history
from adapter.fhir.batching import Query

CURSOR_VERSION = 1


@dataclass(frozen=True)
class PassCursor:
    """Where a pass over one resource type stands after a committed page."""

    plan: str  # fingerprint of the query plan it belongs to
    query: int  # the query to continue with
    next_url: str | None  # the page of that query to continue with; None: its first page
    started: str | None  # the server's time when the pass began (the watermark), ISO 8601

    def dump(self) -> str:
        return orjson.dumps({"v": CURSOR_VERSION, **self.__dict__}).decode()

    @classmethod
    def load(cls, text: str) -> PassCursor | None:
        try:
            data = orjson.loads(text)
            if data.get("v") != CURSOR_VERSION:
                return None
            cursor = cls(str(data["plan"]), int(data["query"]), data.get("next_url"), data.get("started"))
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            return None
        return cursor


def escape_token(value: str) -> str:
    """Escape a token part for a search value (https://hl7.org/fhir/R4/search.html#escaping)."""
    for char in ("\\", ",", "|", "$"):
        value = value.replace(char, "\\" + char)
    return value


def code_tokens(codes: Iterable[tuple[str, str]]) -> list[str]:
    """Escaped ``system|code`` search tokens for these codes, sorted (a stable query plan)."""
    return sorted({f"{escape_token(system)}|{escape_token(code)}" for system, code in codes})


def identifier_token(entry: roster_mod.RosterEntry) -> str:
    """The ``system|value`` search token of a roster identifier."""
    return f"{escape_token(entry.identifier_system)}|{escape_token(entry.identifier_value)}"


def plan_fingerprint(queries: Sequence[Query]) -> str:
    """Identifies a query plan, so a cursor is only used with the plan that wrote it."""
    return hashlib.sha256(b"\n".join(q.fingerprint() for q in queries)).hexdigest()[:16]


def search_since(since: dt.datetime) -> str:
    """The ``_lastUpdated`` value for "changed after ``since``", in UTC to the millisecond."""
    return "gt" + history.since_value(since)
