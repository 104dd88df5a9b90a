"""The synonym table: what sites call each protocol concept, and what disqualifies a name.

``synonyms.toml`` sits beside ``concepts.toml`` in the mapping folder.  Per
concept id it lists names (``alanine aminotransferase``, ``谷丙转氨酶``),
abbreviations (``ALT``, ``GPT``, ``SGPT``), words that mean another analyte
(``exclude``: "direct" bilirubin, creatine "kinase") and words that mean the
same analyte by a method or specimen the protocol does not ask for
(``caution``: SpO2 from a blood gas, LVEF by MUGA).  Every term is read once,
when the file is loaded, into the token form of ``text.read``, so matching a
name is string work only.

A wrong table silently mis-suggests, so loading validates with pydantic and
fails with the file, the key and the reason.  A mapping folder without the
file has an empty table (no suggestions): older mapping folders still load.
Loaded tables are cached per path and file stamp, so an edited file is read
again.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from adapter import errors
from adapter.mapping import catalog as catalog_mod
from adapter.mapping.suggest import text

SYNONYMS_FILE = catalog_mod.SYNONYMS_FILE  # hashed into the catalog version there

TermKind = Literal["name", "abbreviation"]
_TERM_FIELDS: tuple[TermKind, ...] = ("name", "abbreviation")


def _names_an_analyte(term: str) -> str:
    if not text.read(term).content:
        raise ValueError(f"{term!r} has no word that can name an analyte (only filler such as 'serum')")
    return term


def _has_words(term: str) -> str:
    if not text.read(term).full:
        raise ValueError(f"{term!r} has no words")
    return term


NameTerm = Annotated[str, AfterValidator(_names_an_analyte)]
WordsTerm = Annotated[str, AfterValidator(_has_words)]


class SynonymEntry(BaseModel):
    """One concept's entry as written in synonyms.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str | None = None  # what evidence calls the concept ("ALT"); the catalog label if absent
    names: tuple[NameTerm, ...] = ()
    abbreviations: tuple[NameTerm, ...] = ()
    exclude: tuple[WordsTerm, ...] = ()
    caution: tuple[WordsTerm, ...] = ()

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> SynonymEntry:
        if not self.names and not self.abbreviations:
            raise ValueError("give at least one name or abbreviation")
        naming = {text.read(term).full_line for term in (*self.names, *self.abbreviations)}
        for term in (*self.exclude, *self.caution):
            if text.read(term).full_line in naming:
                raise ValueError(f"{term!r} is both a name of the concept and a word that disqualifies it")
        return self


ConceptId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]


class SynonymFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    concepts: dict[ConceptId, SynonymEntry] = {}


@dataclass(frozen=True, slots=True)
class Term:
    """A name or abbreviation of a concept, as written and as the tokens a name is matched on."""

    written: str
    kind: TermKind
    tokens: tuple[str, ...]  # text.read(written).content
    line: str  # the tokens, one space between each


@dataclass(frozen=True, slots=True)
class Phrase:
    """A disqualifying phrase, as written and as every token of it (filler words count here)."""

    written: str
    line: str  # text.read(written).full_line


@dataclass(frozen=True, slots=True)
class ConceptNames:
    """Everything the table says about one concept."""

    concept: str
    label: str | None
    terms: tuple[Term, ...]
    exclude: tuple[Phrase, ...]
    caution: tuple[Phrase, ...]


@dataclass(frozen=True)
class SynonymTable:
    """The synonym table of one mapping folder (empty when the folder has none)."""

    path: Path | None
    concepts: dict[str, ConceptNames]

    def check_against(self, catalog: catalog_mod.Catalog) -> None:
        """Raise MappingError when the table names a concept the catalog does not have."""
        unknown = sorted(set(self.concepts) - set(catalog.concepts))
        if unknown:
            raise errors.MappingError(
                f"{self.path} [concepts.{unknown[0]}]: no concept {unknown[0]!r} in the catalog "
                f"(the table names {', '.join(repr(u) for u in unknown)}; "
                f"known: {', '.join(sorted(catalog.concepts))})"
            )


NO_SYNONYMS = SynonymTable(path=None, concepts={})


def synonyms_of(catalog: catalog_mod.Catalog) -> SynonymTable:
    """The synonym table of the catalog's mapping folder, read and checked once per catalog.

    Triage asks for it for every resource with an unknown standard code, so
    it is kept on the catalog rather than looked up (a file stat) each time;
    a catalog without a folder has none.
    """
    table = catalog.folder_tables.get(SYNONYMS_FILE)
    if table is None:
        table = load_synonyms(catalog.mapping_dir) if catalog.mapping_dir else NO_SYNONYMS
        table.check_against(catalog)
        catalog.folder_tables[SYNONYMS_FILE] = table
    return table


def load_synonyms(mapping_dir: Path) -> SynonymTable:
    """The synonym table of ``mapping_dir`` (``synonyms.toml``); an empty table when there is none.

    Raises MappingError naming the file, the key and the reason for a file
    that cannot be read or is invalid.
    """
    path = mapping_dir / SYNONYMS_FILE
    try:
        stat = path.stat()
    except FileNotFoundError:
        return SynonymTable(path=path, concepts={})
    except OSError as exc:
        raise errors.MappingError(f"{path}: cannot read the synonym table ({exc.strerror or exc})") from exc
    return _load(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _load(path: Path, mtime_ns: int, size: int) -> SynonymTable:
    """The table at ``path`` as it is at this file stamp (the stamp is only the cache key)."""
    try:
        source = path.read_text(encoding="utf-8")
        raw = tomllib.loads(source)
    except OSError as exc:
        raise errors.MappingError(f"{path}: cannot read the synonym table ({exc.strerror or exc})") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise errors.MappingError(f"{path}: not valid TOML: {exc}") from exc
    try:
        parsed = SynonymFile.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = [
            f"  - {_where(err['loc'], source)}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        ]
        raise errors.MappingError(f"{path}: invalid synonym table\n" + "\n".join(problems)) from None
    return SynonymTable(
        path=path, concepts={cid: _compile(cid, entry) for cid, entry in parsed.concepts.items()}
    )


def _compile(concept: str, entry: SynonymEntry) -> ConceptNames:
    terms = [
        Term(written=written, kind=kind, tokens=read.content, line=read.content_line)
        for kind, listed in zip(_TERM_FIELDS, (entry.names, entry.abbreviations), strict=True)
        for written in listed
        for read in [text.read(written)]
    ]
    return ConceptNames(
        concept=concept,
        label=entry.label,
        terms=tuple(terms),
        exclude=tuple(Phrase(written=w, line=text.read(w).full_line) for w in entry.exclude),
        caution=tuple(Phrase(written=w, line=text.read(w).full_line) for w in entry.caution),
    )


def _where(loc: tuple[Any, ...], source: str) -> str:
    """A pydantic error location as the TOML key a person looks for: ``[concepts.alt] names[3]`` (line N)."""
    if len(loc) >= 2 and loc[0] == "concepts":
        concept = str(loc[1])
        rest = loc[2:]
        key = str(rest[0]) if rest else ""
        if len(rest) >= 2 and isinstance(rest[1], int):
            key += f"[{rest[1]}]"
        line = _header_line(source, concept)
        return (
            f"[concepts.{concept}]"
            + (f" {key}" if key else "")
            + (f" (section at line {line})" if line else "")
        )
    return ".".join(str(part) for part in loc) or "the file"


def _header_line(source: str, concept: str) -> int:
    """The line number of ``[concepts.<concept>]`` in the file, 0 if it is not written that way."""
    header = f"[concepts.{concept}]"
    for number, line in enumerate(source.splitlines(), start=1):
        if line.strip().replace(" ", "") == header:
            return number
    return 0
