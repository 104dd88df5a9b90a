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


def _key(fact: Fact) -> tuple[dt.datetime, str, str]:
    # The JSON dump breaks the remaining ties, so the order is total.
    return (fact.effective_start, fact.source_ref, fact.model_dump_json())


def canonical(facts: Iterable[Fact]) -> tuple[Fact, ...]:
    """Facts without exact duplicates, ordered by time, then source, then content."""
    unique = {fact.model_dump_json(): fact for fact in facts}
    return tuple(sorted(unique.values(), key=_key))


def of_concept(facts: Iterable[Fact], *concepts: str) -> tuple[Fact, ...]:
    """The facts of the given concepts, in canonical order."""
    return canonical(fact for fact in facts if fact.concept in concepts)


def latest(facts: Iterable[Fact]) -> Fact | None:
    """The most recent fact by effective time (ties broken canonically)."""
    ordered = canonical(facts)
    return ordered[-1] if ordered else None
