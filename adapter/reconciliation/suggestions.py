"""Which concept an open ``unknown_code`` issue's code probably means, and accepting one.

A data manager facing ``lis|0082 (GPT)`` should check a suggestion, not
search the catalog.  ``adapter.mapping.suggest`` ranks concepts for a name,
a unit and values; this module gives it what the site sent under the
issue's code (``sent_under_code``):

- every name: the display the issue's detail quotes first (it is there
  even when no source body is), then the displays and texts most sent;
  a concept is scored by its best name;
- the unit most results were sent in, and the values sent in it (a note
  says so when results came in several units, or when only the first
  results were read).

A concept whose kind the sources' resource type cannot carry (a drug for an
Observation) is never suggested: mapping it would only raise
``wrong_resource_type``.  The evidence sentences name displays, units and
counts, never a patient, a subject or a resource.

Suggestions are computed when shown (the worklist's rows, an issue's page,
``trial-adapter issues``), never stored: they follow the catalog, the
synonym table and the sources as they are now.  A suggestion becomes a
mapping only when a person accepts it (``accept``, the console's button):
that is exactly the ``map code`` fix, with the suggestion's score and
evidence in its audit entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter import errors
from adapter.mapping import catalog as catalog_mod
from adapter.mapping import suggest
from adapter.mapping.facts import KINDS_FOR_RESOURCE_TYPE
from adapter.mapping.issues import IssueKind
from adapter.reconciliation import fixes, sent_under_code, site_files
from adapter.reconciliation.actions import FixRefused, FixResult
from adapter.reconciliation.override_fix import FixProgress, no_progress
from adapter.reconciliation.sent_under_code import SentUnderCode
from adapter.store import models

SHOWN = 3  # suggestions per issue on its page and in `issues show`
NAMES_TRIED = 5  # distinct names (displays, texts) ranked per issue, the most sent first
_NAME_LIMIT = 200  # characters of a name ranked: a display is a few words, a site may send a page


@dataclass(frozen=True)
class IssueSuggestion:
    """A concept the issue's code may mean: its id and label, the score (0–1) and why."""

    concept: str
    label: str
    score: float
    evidence: tuple[str, ...]

    @property
    def percent(self) -> int:
        return round(self.score * 100)

    def as_item(self) -> dict[str, object]:
        """What ``issues list --format json|csv`` writes for it."""
        return {"concept": self.concept, "score": self.score, "evidence": list(self.evidence)}

    def audit_detail(self) -> dict[str, object]:
        """What an accepted suggestion adds to the audit entry of its ``map code`` fix."""
        return {"suggested": True, "score": self.score, "evidence": list(self.evidence)}


@dataclass(frozen=True)
class Accepted:
    """The issue a suggestion was accepted for, in plain values (the session that read it is closed)."""

    issue_key: str
    site: str
    code: str
    suggestion: IssueSuggestion


def can_suggest(row: models.IssueRow) -> bool:
    """Whether the issue gets suggestions: an open ``unknown_code`` issue of a code."""
    return row.kind == IssueKind.UNKNOWN_CODE.value and row.status == "open" and bool(row.code)


def suggestions_for(
    config: config_mod.Config, session: Session, rows: Iterable[models.IssueRow], *, top: int = SHOWN
) -> dict[str, list[IssueSuggestion]]:
    """Suggestions per issue key for those of ``rows`` that get them (``can_suggest``).

    The catalog and synonym table of each site are loaded once.  A site whose
    catalog cannot be loaded (a broken fix file, a site no longer in the
    config) gets no suggestions here: its sync and ``trial-adapter check``
    say what is wrong.
    """
    found: dict[str, list[IssueSuggestion]] = {}
    terms: dict[str, _SiteTerms | None] = {}
    for row in rows:
        if not can_suggest(row):
            continue
        if row.site not in terms:
            try:
                terms[row.site] = _SiteTerms.load(config, row.site)
            except (errors.MappingError, errors.ConfigError):
                terms[row.site] = None
        site_terms = terms[row.site]
        if site_terms is not None:
            found[row.key] = site_terms.rank(row, sent_under_code.read(session, row, site_terms.catalog), top)
    return found


def choose(config: config_mod.Config, session: Session, key: str, concept: str | None = None) -> Accepted:
    """The suggestion to accept for issue ``key``: the best one, or ``concept`` if it is suggested.

    Raises ``FixRefused`` when the issue is not an open ``unknown_code`` issue,
    has no suggestion, or ``concept`` is not among its suggestions; a broken
    catalog raises its ``MappingError`` or ``ConfigError``.
    """
    row = session.get(models.IssueRow, key)
    if row is None:
        raise FixRefused(f"no issue with key {key!r}; `trial-adapter issues list` shows the keys")
    if not can_suggest(row) or row.code is None:
        raise FixRefused(
            f"{key} is a {row.status} {row.kind} issue; only an open unknown_code issue of a code "
            "gets suggestions"
        )
    by_hand = f"trial-adapter map code '{row.code}' CONCEPT --site {row.site}"
    site_terms = _SiteTerms.load(config, row.site)
    found = site_terms.rank(row, sent_under_code.read(session, row, site_terms.catalog), SHOWN)
    if not found:
        raise FixRefused(f"no concept is suggested for {row.code}; choose one yourself: {by_hand}")
    picked = found[0] if concept is None else next((s for s in found if s.concept == concept), None)
    if picked is None:
        listed = ", ".join(s.concept for s in found)
        raise FixRefused(
            f"{concept!r} is not among the suggestions for {row.code} ({listed}); "
            f"to map it to another concept, choose it yourself: {by_hand}"
        )
    return Accepted(issue_key=row.key, site=row.site, code=row.code, suggestion=picked)


def accept(
    config: config_mod.Config,
    sessions: sessionmaker[Session],
    key: str,
    concept: str | None = None,
    *,
    actor: str,
    progress: FixProgress = no_progress,
) -> tuple[Accepted, FixResult]:
    """Accept a suggestion for issue ``key`` (see ``choose``): the ``map code`` fix, audited as suggested."""
    with sessions() as session:
        accepted = choose(config, session, key, concept)
    result = fixes.map_code(
        config,
        sessions,
        accepted.site,
        accepted.code,
        accepted.suggestion.concept,
        actor=actor,
        issue_key=accepted.issue_key,
        progress=progress,
        audit_detail=accepted.suggestion.audit_detail(),
    )
    return accepted, result


@dataclass(frozen=True)
class _SiteTerms:
    """A site's catalog and the synonym table of its mapping folder: what a suggestion needs."""

    catalog: catalog_mod.Catalog
    synonyms: suggest.SynonymTable

    @classmethod
    def load(cls, config: config_mod.Config, site: str) -> _SiteTerms:
        catalog = site_files.catalog(config, site)
        return cls(catalog, suggest.synonyms_of(catalog))

    def rank(self, row: models.IssueRow, sent: SentUnderCode, top: int) -> list[IssueSuggestion]:
        """The best ``top`` concepts over every name sent, each scored by its best name."""
        kinds = {kind for rtype in sent.resource_types for kind in KINDS_FOR_RESOURCE_TYPE.get(rtype, ())}
        unit = sent.unit()
        values = sent.values.get(unit, [])
        best: dict[str, suggest.Suggestion] = {}
        for name in _names(row, sent):
            for found in suggest.suggest(
                self.catalog,
                self.synonyms,
                display=name,
                unit=unit,
                values=values,
                top=len(self.catalog.concepts),
            ):
                if kinds and self.catalog.concepts[found.concept].kind not in kinds:
                    continue
                if found.concept not in best or found.score > best[found.concept].score:
                    best[found.concept] = found
        ranked = sorted(best.values(), key=lambda s: -s.score)[: max(0, top)]  # stable: ties keep their order
        notes = tuple(sent.notes())
        return [
            IssueSuggestion(s.concept, self.label(s.concept), s.score, (*s.evidence, *notes)) for s in ranked
        ]

    def label(self, concept: str) -> str:
        names = self.synonyms.concepts.get(concept)
        return (names.label if names else None) or self.catalog.concepts[concept].spec.label


def _names(row: models.IssueRow, sent: SentUnderCode) -> list[str]:
    """The names to rank: the issue's own display first, then the most sent, at most ``NAMES_TRIED``."""
    ordered = [_detail_display(row), *(name for name, _count in sent.names.most_common())]
    cut = (" ".join(name.split())[:_NAME_LIMIT] for name in ordered)
    return [name for name in dict.fromkeys(cut) if name][:NAMES_TRIED]


def _detail_display(row: models.IssueRow) -> str:
    """The display the engine quoted in the detail: ``code <system|code> (<display>) is not …``."""
    opening, closing = f"code {row.code} (", ") is not in the catalog"
    detail = row.detail or ""
    if not detail.startswith(opening):
        return ""
    end = detail.rfind(closing)
    return detail[len(opening) : end] if end >= len(opening) else ""
