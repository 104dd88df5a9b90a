"""Which protocol concept an unknown code probably means, with the evidence for it.

A site sends a code the catalog does not know (a local LIS code shown as
``丙氨酸氨基转移酶`` with unit ``U/L``, or ``GPT``, or ``SGPT``).  The data
manager has to say which concept it is; this package ranks the candidates
so they can check rather than search, and tells the triage of unknown
*standard* codes (``adapter.mapping.triage``) whether a display names a
protocol concept at all.

- ``synonyms.py``: the study's synonym table (``synonyms.toml`` in the
  mapping folder), validated and cached per path;
- ``text.py``: one spelling of a name (case, full width, lookalike letters,
  specimen and method words);
- ``names.py``: how a name matches a concept's names, and the words that
  rule a concept out;
- ``measures.py``: what the unit and the values add;
- ``ranking.py``: ``suggest`` and ``looks_like_protocol``.

It suggests; it never maps.  A suggestion becomes a mapping only when a
person makes it one (``trial-adapter map``, the console).
"""

from adapter.mapping.suggest.ranking import Suggestion, looks_like_protocol, suggest
from adapter.mapping.suggest.synonyms import (
    NO_SYNONYMS,
    SYNONYMS_FILE,
    SynonymTable,
    load_synonyms,
    synonyms_of,
)

__all__ = [
    "NO_SYNONYMS",
    "SYNONYMS_FILE",
    "Suggestion",
    "SynonymTable",
    "load_synonyms",
    "looks_like_protocol",
    "suggest",
    "synonyms_of",
]
