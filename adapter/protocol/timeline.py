"""A subject's facts in one canonical order.

Every derivation must give byte-identical records whatever order the facts
arrive in (sync pages, retries and incremental runs all reorder them), so each
module sorts with the same total key instead of trusting input order, and
exact duplicates (the same fact delivered twice) count once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from adapter.mapping.facts import Fact

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NAIVE_EPOCH = dt.datetime(1970, 1, 1)


def _instant(moment: dt.datetime) -> dt.timedelta:
    """Time since the epoch: sorts and groups as the datetime does, but cheaply.

    Comparing two aware datetimes asks both tzinfo objects for their offset
    every time; a sort of a subject's facts made thousands of such calls.
    The difference from the epoch is computed once per fact, and equal
    instants in different zones still give equal keys.
    """
    return moment - (_NAIVE_EPOCH if moment.tzinfo is None else _EPOCH)


class _Canonical(tuple[Fact, ...]):
    """Facts ``canonical`` already ordered: a filtered copy keeps the order.

    ``derive_subject`` orders a subject's facts once and every module then
    picks its concepts from them; recognising the ordered input spares
    sorting it again on each pick.  Only this module builds one.
    """


def canonical(facts: Iterable[Fact]) -> tuple[Fact, ...]:
    """Facts without exact duplicates, ordered by time, then source, then content.

    The content is the fact's JSON, which makes the order total; it is needed
    only to order facts of the same time and source and to find exact
    duplicates (which share both), so facts are grouped by (time, source) and
    only a group of several is dumped to JSON.  Dumping every fact on every
    concept filter cost more than the derivation itself.  For duplicates the
    last one wins, as a dict keyed by JSON keeps it.
    """
    if isinstance(facts, _Canonical):
        return facts
    groups: dict[tuple[dt.timedelta, str], list[Fact]] = {}
    for fact in facts:
        groups.setdefault((_instant(fact.effective_start), fact.source_ref), []).append(fact)
    ordered: list[Fact] = []
    for key in sorted(groups):
        group = groups[key]
        if len(group) == 1:
            ordered.append(group[0])
        else:
            unique = {fact.model_dump_json(): fact for fact in group}
            ordered.extend(unique[text] for text in sorted(unique))
    return _Canonical(ordered)


def of_concept(facts: Iterable[Fact], *concepts: str) -> tuple[Fact, ...]:
    """The facts of the given concepts, in canonical order."""
    picked = (fact for fact in facts if fact.concept in concepts)
    return _Canonical(picked) if isinstance(facts, _Canonical) else canonical(picked)


def latest(facts: Iterable[Fact]) -> Fact | None:
    """The most recent fact by effective time (ties broken canonically)."""
    ordered = canonical(facts)
    return ordered[-1] if ordered else None
