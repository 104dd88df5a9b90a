"""Ranked concept suggestions for a name the catalog does not know, each with its evidence.

A score is the sum of what the evidence is worth (0 to 1, rounded):

- the name (``names.Level``): exact 0.75, a phrase in it 0.55, its words in
  another order 0.5, inside a longer word 0.3; plus up to 0.1 for the share
  of the name the concept's words explain;
- the unit: +0.1 when it converts to the concept's canonical unit; a unit of
  another dimension rules the concept out;
- the values: +0.05 when at least 90 % fall inside the plausible range,
  -0.3 when fewer than half do;
- a ``caution`` word (the same analyte by a method the protocol does not
  ask for, such as SpO2 from a blood gas): -0.25.

Only a name can put a concept forward; the unit and values rank and rule
out.  The weights are round numbers chosen so that each kind of evidence
outranks the one below it, not fitted to any data set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from adapter.mapping import catalog as catalog_mod
from adapter.mapping.suggest import measures, names, text
from adapter.mapping.suggest.names import Level, NameMatch
from adapter.mapping.suggest.synonyms import SynonymTable

_LEVEL_SCORE = {Level.EXACT: 0.75, Level.PHRASE: 0.55, Level.ANY_ORDER: 0.5, Level.INSIDE_WORD: 0.3}
_COVERAGE_WEIGHT = 0.1
_UNIT_FITS = 0.1
_VALUES_INSIDE = 0.05
_VALUES_MOSTLY_INSIDE = 0.9
_VALUES_OUTSIDE = -0.3
_VALUES_MOSTLY_OUTSIDE = 0.5
_CAUTION = -0.25
#: The weakest name evidence that makes a standard code "look like" a protocol
#: concept: whole words of a known name.  A name inside a longer word is only
#: a hint for a person, never a reason to keep a code as an issue.
_LOOKS_LIKE_LEVEL = Level.ANY_ORDER
_SHOWN_TERMS = 4


@dataclass(frozen=True)
class Suggestion:
    """A concept a name may mean, how strongly (0–1), and why, in short sentences."""

    concept: str
    score: float
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class _Ranked:
    suggestion: Suggestion
    level: Level


def _name_sentence(match: NameMatch, label: str, name: text.Text) -> str:
    term = match.term
    known = f"a known {term.kind} of {label}"
    if match.level is Level.EXACT and term.line == name.content_line:
        return f"name '{term.written}' is {known}"
    if match.level is Level.EXACT and len(match.terms) > 1:
        listed = ", ".join(f"'{t.written}'" for t in match.terms[:_SHOWN_TERMS])
        return f"name is made of known names of {label}: {listed}"
    if match.level is Level.PHRASE:
        return f"name contains '{term.written}', {known}"
    if match.level is Level.INSIDE_WORD:
        return f"a word of the name contains '{term.written}', {known}"
    return f"name has every word of '{term.written}', {known}"


def _evaluate(
    catalog: catalog_mod.Catalog,
    table: SynonymTable,
    concept_id: str,
    name: text.Text,
    unit: str | None,
    values: Sequence[float],
) -> _Ranked | None:
    entry = table.concepts[concept_id]
    match = names.match(entry, name)
    if match is None:
        return None
    concept = catalog.concepts[concept_id]
    label = entry.label or concept.spec.label
    score = _LEVEL_SCORE[match.level] + _COVERAGE_WEIGHT * match.coverage
    evidence = [_name_sentence(match, label, name)]
    if match.caution is not None:
        score += _CAUTION
        evidence.append(
            f"name says '{match.caution.written}': {label} by a method or specimen the protocol "
            "does not ask for; check before mapping"
        )
    fit = measures.unit_fit(catalog, concept, label, unit)
    if fit.fits is False:
        return None
    if fit.fits:
        score += _UNIT_FITS
    if fit.evidence:
        evidence.append(fit.evidence)
    in_range = measures.values_fit(concept, label, values, fit)
    if in_range is not None:
        if in_range.share >= _VALUES_MOSTLY_INSIDE:
            score += _VALUES_INSIDE
        elif in_range.share < _VALUES_MOSTLY_OUTSIDE:
            score += _VALUES_OUTSIDE
        evidence.append(in_range.evidence)
    score = round(min(1.0, max(0.0, score)), 3)
    return _Ranked(Suggestion(concept=concept_id, score=score, evidence=tuple(evidence)), match.level)


def _ranked(
    catalog: catalog_mod.Catalog,
    table: SynonymTable,
    display: str,
    unit: str | None,
    values: Sequence[float],
) -> list[_Ranked]:
    table.check_against(catalog)
    name = text.read(display or "")
    found = [
        ranked
        for concept_id in table.concepts
        if (ranked := _evaluate(catalog, table, concept_id, name, unit, values)) is not None
    ]
    found.sort(key=lambda r: (-r.suggestion.score, -r.level, r.suggestion.concept))
    return found


def suggest(
    catalog: catalog_mod.Catalog,
    synonyms: SynonymTable,
    *,
    display: str,
    unit: str | None = None,
    values: Sequence[float] = (),
    top: int = 3,
) -> list[Suggestion]:
    """The concepts ``display`` may mean, best first, at most ``top`` of them.

    ``unit`` and ``values`` are what the results under that name carried;
    they rank and rule out, they never suggest on their own.  An empty list
    when no concept's name matches.  Raises MappingError when the table
    names a concept the catalog does not have.
    """
    return [ranked.suggestion for ranked in _ranked(catalog, synonyms, display, unit, values)[: max(0, top)]]


def looks_like_protocol(
    catalog: catalog_mod.Catalog, synonyms: SynonymTable, *, display: str, unit: str | None = None
) -> Suggestion | None:
    """The concept a standard code with this display probably means, or None when it names none.

    A display that names a concept in whole words (exactly, as a phrase or
    in another word order), with no word that rules the concept out and no
    unit of another dimension, looks like the protocol: the same analyte in
    another specimen or by another method is still that analyte, and a
    person should decide.  Ordinary labs and vitals (sodium, HbA1c, direct
    bilirubin, creatine kinase, heart rate) name no concept and get None.
    """
    for ranked in _ranked(catalog, synonyms, display, unit, ()):
        if ranked.level >= _LOOKS_LIKE_LEVEL:
            return ranked.suggestion
    return None
