"""How well a name matches one concept's names, and the words that rule the concept out.

Name evidence is the only evidence that can put a concept forward: a unit
or a range fits many analytes (U/L is ALT, AST, ALP, GGT, LDH, CK ...), so
they only rank concepts a name already suggested.  The levels, strongest
first:

``EXACT``
    the name is nothing but the concept's names and abbreviations, once
    specimen and method words are dropped (``ALT (serum)``, ``血清肌酐``,
    ``TBIL 总胆红素``, the LOINC long name ``Alanine aminotransferase
    [Enzymatic activity/volume] in Serum or Plasma``);
``PHRASE``
    a known name or abbreviation stands in it as whole words (``GPT 测定
    速率法``); a Chinese name, which has no spaces, anywhere in it;
``ANY_ORDER``
    every word of a known name, in another order (``Bilirubin, total``);
``INSIDE_WORD``
    a long known name inside a longer word (``SerumCreatinine``): a hint
    for a person, not evidence that a code means a protocol concept.

An abbreviation alone that is fewer than a sixth of a long name's words is
no match at all: short abbreviations are also words ("got" in a survey
question is not GOT, the old name of AST).

How much of the name the matches explain (its coverage) ranks matches of the
same level: ``MRD by flow cytometry`` is all flow-MRD words, one of them an
NGS-MRD word.  A phrase from ``exclude`` anywhere in the name (``direct``
bilirubin, creatine ``kinase``) rules the concept out; one from ``caution``
(SpO2 from a ``blood gas``) keeps it, flagged.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from adapter.mapping.suggest.synonyms import ConceptNames, Phrase, Term
from adapter.mapping.suggest.text import Text

_MIN_INSIDE_WORD = 6  # shorter names inside a word are chance ("alt" in "salt")
_MIN_ABBREVIATION_WORDS = 1 / 6  # see the module docstring


class Level(enum.IntEnum):
    INSIDE_WORD = 1
    ANY_ORDER = 2
    PHRASE = 3
    EXACT = 4


@dataclass(frozen=True, slots=True)
class NameMatch:
    """The best way a name matches one concept."""

    level: Level
    coverage: float  # share of the name's content characters the concept's terms explain
    term: Term  # the strongest term that matched (for the evidence sentence)
    terms: tuple[Term, ...]  # every term that matched, strongest first
    caution: Phrase | None


def _is_word_char(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _occurrences(line: str, needle: str, *, whole_words: bool) -> list[int]:
    """Where ``needle`` starts in ``line``.

    With ``whole_words``, an ASCII letter or digit at either edge of the
    needle must meet a space or the end of the line; a CJK edge may meet
    anything, as Chinese has no spaces between words.
    """
    found: list[int] = []
    start = line.find(needle)
    while start >= 0:
        end = start + len(needle)
        left_ok = not _is_word_char(needle[0]) or start == 0 or line[start - 1] == " "
        right_ok = not _is_word_char(needle[-1]) or end == len(line) or line[end] == " "
        if not whole_words or (left_ok and right_ok):
            found.append(start)
        start = line.find(needle, start + 1)
    return found


def contains_phrase(line: str, phrase: str) -> bool:
    """Whether ``phrase`` stands in ``line`` as whole words (a CJK phrase: anywhere)."""
    return bool(_occurrences(line, phrase, whole_words=True))


def _token_spans(line: str) -> dict[str, list[tuple[int, int]]]:
    spans: dict[str, list[tuple[int, int]]] = {}
    position = 0
    for token in line.split(" "):
        spans.setdefault(token, []).append((position, position + len(token)))
        position += len(token) + 1
    return spans


def _match_term(
    term: Term, line: str, spans: dict[str, list[tuple[int, int]]]
) -> tuple[Level, set[int]] | None:
    """The level at which ``term`` matches ``line`` and the character positions it explains."""
    needle = term.line
    whole = _occurrences(line, needle, whole_words=True)
    if whole:
        return Level.PHRASE, {i for start in whole for i in range(start, start + len(needle))}
    if term.kind == "name" and len(term.tokens) >= 2:
        covered: set[int] = set()
        for token in term.tokens:
            if token in spans:
                covered.update(i for a, b in spans[token] for i in range(a, b))
            elif not _is_word_char(token[0]) and token in line:  # a CJK word of the name, inside a CJK token
                covered.update(
                    i
                    for start in _occurrences(line, token, whole_words=False)
                    for i in range(start, start + len(token))
                )
            else:
                return None
        return Level.ANY_ORDER, covered
    if term.kind == "name" and len(needle) >= _MIN_INSIDE_WORD and needle.isascii():
        inside = _occurrences(line, needle, whole_words=False)
        if inside:
            return Level.INSIDE_WORD, {i for start in inside for i in range(start, start + len(needle))}
    return None


def _word_share(covered: set[int], spans: dict[str, list[tuple[int, int]]]) -> float:
    """The share of the name's words that the matches touch."""
    words = [span for listed in spans.values() for span in listed]
    touched = sum(1 for a, b in words if any(i in covered for i in range(a, b)))
    return touched / len(words)


def _distinct(terms: Iterable[Term]) -> tuple[Term, ...]:
    """The matched terms worth naming: one per spelling, none inside a longer one (胆红素 in 总胆红素)."""
    kept: list[Term] = []
    for term in terms:
        if not any(term.line in other.line for other in kept):
            kept.append(term)
    return tuple(kept)


def disqualifying(names: ConceptNames, name: Text) -> Phrase | None:
    """The first ``exclude`` phrase of the concept found in the name, if any."""
    line = name.full_line
    return next((phrase for phrase in names.exclude if contains_phrase(line, phrase.line)), None)


def match(names: ConceptNames, name: Text) -> NameMatch | None:
    """How ``name`` matches the concept's names; None when it does not, or an excluding word rules it out."""
    line = name.content_line
    if not line:
        return None
    spans = _token_spans(line)
    found: list[tuple[Level, Term]] = []
    covered: set[int] = set()
    for term in names.terms:
        matched = _match_term(term, line, spans)
        if matched is not None:
            found.append((matched[0], term))
            covered |= matched[1]
    if not found or disqualifying(names, name) is not None:
        return None
    only_abbreviations = all(term.kind == "abbreviation" for _, term in found)
    if only_abbreviations and _word_share(covered, spans) < _MIN_ABBREVIATION_WORDS:
        return None
    found.sort(key=lambda pair: (-pair[0], -len(pair[1].line), len(pair[1].written)))
    letters = sum(1 for char in line if char != " ")
    coverage = len({i for i in covered if line[i] != " "}) / letters
    level = found[0][0]
    if coverage >= 1.0 and level >= Level.ANY_ORDER:
        level = Level.EXACT  # a name made of nothing but the concept's words is as good as one of them
    full_line = name.full_line
    caution = next((phrase for phrase in names.caution if contains_phrase(full_line, phrase.line)), None)
    return NameMatch(
        level=level,
        coverage=coverage,
        term=found[0][1],
        terms=_distinct(term for _, term in found),
        caution=caution,
    )
