"""Which unknown codes are a data manager's problem, and which are simply outside the protocol.

A site's export carries far more than the protocol needs: a US Core lab
feed sends sodium, lipids, HbA1c, heart rate.  Each of those codes is a
standard code (LOINC, SNOMED CT, RxNorm, …: the code systems the catalog
names in [systems]) that the catalog does not hold, and not being a
protocol concept is not a problem anyone has to solve.  Raising an
``unknown_code`` issue for each would bury the issues that need a decision.

So an unknown code is triaged:

- a standard code whose displays (and the concept's text) do not look like a
  protocol concept (``suggest.looks_like_protocol``) is *outside the
  protocol*: no issue, the resource counted in coverage under that code and
  listed by ``discover``;
- a standard code that does look like one (the same analyte in another
  specimen, method or unit; a display naming the concept) stays an
  ``unknown_code`` issue, since it may well be data the protocol needs;
- every code of a site-local system stays an issue: only a person can say
  what a local code means.

Nothing is dropped: an ``outside`` resource is stored with its code, and
mapping the code later (a site fix) re-maps it like any other.  A mapping
folder without a synonym table has nothing to tell protocol analytes by, so
there every unknown code stays an issue, as before triage existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapter.mapping import catalog as catalog_mod
from adapter.mapping import suggest
from adapter.mapping.context import OutsideCode

_DISPLAY_LIMIT = 200  # the stored display is for a coverage line, not the whole text


def outside_protocol(
    catalog: catalog_mod.Catalog, codings: Sequence[Any], text: str | None
) -> OutsideCode | None:
    """The standard code that places these codings outside the protocol, or None (an issue).

    ``codings`` are the concept's codings, none of them mapped or ignored.
    None when no coding is of a standard system, or when any display or the
    text looks like a protocol concept.
    """
    synonyms = suggest.synonyms_of(catalog)
    if not synonyms.concepts:  # nothing to tell protocol analytes by: every code is an issue
        return None
    standard = [
        coding
        for coding in codings
        if (coding.code or "").strip() and catalog.canonical_system(coding.system) in catalog.standard_systems
    ]
    if not standard:
        return None
    names = [coding.display for coding in codings if coding.display] + ([text] if text else [])
    if any(_looks_like_protocol(catalog, synonyms, name) for name in names):
        return None
    first = standard[0]
    code = f"{catalog.canonical_system(first.system)}|{first.code.strip()}"
    display = (first.display or text or "").strip()[:_DISPLAY_LIMIT]
    return OutsideCode(code=code, display=display)


def _looks_like_protocol(catalog: catalog_mod.Catalog, synonyms: suggest.SynonymTable, name: str) -> bool:
    """Whether ``name`` looks like a protocol concept; asked once per distinct name and catalog."""
    memo = catalog.triage_memo
    known = memo.get(name)
    if known is not None:
        return known
    looks = suggest.looks_like_protocol(catalog, synonyms, display=name) is not None
    if len(memo) < catalog_mod.MEMO_LIMIT:
        memo[name] = looks
    return looks
