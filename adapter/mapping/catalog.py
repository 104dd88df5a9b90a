"""The mapping catalog: concepts, their codes and units, plus per-site overrides.

The central ``concepts.toml`` is owned by the study; each site adds its local
codes and unit spellings without touching it (docs/design.md §3): in
``sites/<site>.toml`` of the mapping folder (shipped, read only) and in its
own fix file ``<overrides>/<site>.toml`` (written by ``trial-adapter map`` and
the console, kept in the site's state folder so upgrades never touch it).
Loading validates each with pydantic and fails with the file, the line and
the reason, because a wrong catalog silently mis-maps lab values.
A code that would mean two concepts is a load error, never a coin toss.

Every fact carries ``Catalog.version``: a hash of exactly the files that
shaped it, so the trial repository can tell which mapping produced a value.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from adapter import errors
from adapter.mapping import units
from adapter.mapping.facts import ConceptKind

M = TypeVar("M", bound=BaseModel)

CONCEPTS_FILE = "concepts.toml"
SYNONYMS_FILE = "synonyms.toml"  # read by adapter.mapping.suggest; hashed into the version here
SITES_DIR = "sites"


class ConceptSpec(BaseModel):
    """One protocol concept as written in concepts.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: ConceptKind
    label: str
    unit: str | None = None
    accepted_units: tuple[str, ...] = ()
    molar_mass: float | None = Field(None, gt=0)
    plausible: tuple[float, float] | None = None
    codes: tuple[str, ...] = ()
    answers: dict[str, int] = {}
    # Results a lab may report as a word instead of a number (MRD "negative"):
    # result -> the answer codes ("system|code") and the texts that mean it.
    qualitative: dict[str, tuple[str, ...]] = {}
    qualitative_text: dict[str, tuple[str, ...]] = {}
    study_drug: bool = False
    text_patterns: tuple[str, ...] = ()

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> ConceptSpec:
        if self.plausible is not None and self.plausible[0] > self.plausible[1]:
            raise ValueError("plausible must be [low, high] with low <= high")
        if self.accepted_units and self.unit is None:
            raise ValueError("accepted_units given but no canonical unit")
        if self.unit is not None and self.accepted_units and self.unit not in self.accepted_units:
            raise ValueError(f"canonical unit {self.unit!r} must be one of accepted_units")
        return self


class CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    catalog: dict[str, str]
    systems: dict[str, str] = {}
    system_aliases: dict[str, str] = {}
    concepts: list[ConceptSpec] = Field(min_length=1)


class SiteOverrideFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    codes: dict[str, str] = {}
    units: dict[str, str] = {}
    ignored_codes: dict[str, str] = {}


@dataclass(frozen=True)
class Concept:
    """A concept ready for the engine: codes resolved to (system, code).

    ``id`` and ``kind`` are copied from the spec once: the engine reads them
    several times per resource, and a property call each time showed up in
    the mapping profile (bench/map_bench.py).
    """

    spec: ConceptSpec
    answers: dict[tuple[str, str], int] = field(default_factory=dict)
    qualitative: dict[tuple[str, str], str] = field(default_factory=dict)  # answer code -> result
    id: str = field(init=False)
    kind: ConceptKind = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", self.spec.id)
        object.__setattr__(self, "kind", self.spec.kind)


@functools.lru_cache(maxsize=1024)
def normal_system_url(system: str) -> str:
    """One spelling of a code-system URL: ``http``, lower-case host, no trailing slash.

    Sites write the same system several ways (``https://loinc.org``,
    ``HTTP://LOINC.ORG/``); the scheme, the host's case and a trailing slash
    never tell two code systems apart, so they are not allowed to make a known
    code look unknown.  The path keeps its case (RxNorm's ``umls/rxnorm``).
    Anything not an http(s) URL (``urn:oid:...``, a local name) is kept as is.
    """
    scheme, sep, rest = system.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return system
    host, slash, path = rest.partition("/")
    return f"http://{host.lower()}{slash}{path}".rstrip("/")


def canonical(system: str, aliases: dict[str, str]) -> str:
    """The catalog's name for a code system: its alias (``urn:oid:...``) resolved, one URL spelling."""
    system = system.strip()
    named = aliases.get(system) or aliases.get(normal_system_url(system)) or system
    return normal_system_url(named)


@dataclass(frozen=True)
class Catalog:
    """The central catalog merged with one site's overrides."""

    study: str
    site: str | None
    version: str
    concepts: dict[str, Concept]
    codes: dict[tuple[str, str], str]
    system_aliases: dict[str, str]
    unit_spellings: dict[str, str]
    ignored_codes: dict[tuple[str, str], str]
    code_sources: dict[tuple[str, str], str] = field(default_factory=dict)
    # The short names of [systems] ("loinc" = "http://loinc.org"), which the
    # catalog's and the fix files' "system|code" keys may use; a resource's own
    # coding must name its system in full, so this is only for those keys.
    short_names: dict[str, str] = field(default_factory=dict)
    # The mapping folder the catalog was read from (its synonym table lives there).
    mapping_dir: Path | None = None
    # Answers already worked out, keyed by the source's exact spelling: a site
    # sends a few hundred distinct codings and unit spellings a million times,
    # so each is normalized and looked up once (see _remember for the bound).
    _concepts_by_coding: dict[tuple[str | None, str | None], Concept | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _ucum_by_spelling: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    # Display text -> whether it looks like a protocol concept (adapter.mapping.triage).
    triage_memo: dict[str, bool] = field(default_factory=dict, init=False, repr=False, compare=False)
    # Tables of the mapping folder read once per catalog by the modules that use them
    # (the synonym table: adapter.mapping.suggest.synonyms_of), keyed by file name.
    folder_tables: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def canonical_system(self, system: str | None) -> str:
        return canonical(system or "", self.system_aliases)

    @functools.cached_property
    def standard_systems(self) -> frozenset[str]:
        """The standard code systems the catalog names in [systems] (LOINC, SNOMED CT, …), canonical."""
        return frozenset(self.canonical_system(url) for url in self.short_names.values())

    def key_system(self, system: str) -> str:
        """The system of a "system|code" key as written in a mapping file (short name or URL)."""
        return self.canonical_system(self.short_names.get(system, system))

    def concept_for(self, system: str | None, code: str | None) -> Concept | None:
        key = (system, code)
        try:
            return self._concepts_by_coding[key]
        except KeyError:
            concept = self._lookup_concept(system, code)
        except TypeError:  # an unhashable value from a duck-typed resource: no shortcut
            return self._lookup_concept(system, code)
        _remember(self._concepts_by_coding, key, concept)
        return concept

    def _lookup_concept(self, system: str | None, code: str | None) -> Concept | None:
        if not code:
            return None
        concept_id = self.codes.get((self.canonical_system(system), code.strip()))
        return self.concepts[concept_id] if concept_id else None

    def is_ignored(self, system: str | None, code: str | None) -> bool:
        return (self.canonical_system(system), (code or "").strip()) in self.ignored_codes

    def ucum(self, spelling: str) -> str:
        """A site's unit spelling in UCUM (site table first, then the unit module).

        Raises ``units.UnknownUnit`` for a spelling it cannot read; refusals are
        not remembered, only answers.
        """
        known = self._ucum_by_spelling.get(spelling)
        if known is not None:
            return known
        stripped = spelling.strip()
        site_unit = self.unit_spellings.get(stripped)
        ucum = units.normalize(site_unit if site_unit is not None else stripped)
        _remember(self._ucum_by_spelling, spelling, ucum)
        return ucum

    def study_drug_patterns(self) -> list[tuple[str, re.Pattern[str]]]:
        return [
            (c.id, re.compile("|".join(re.escape(p) for p in c.spec.text_patterns), re.IGNORECASE))
            for c in self.concepts.values()
            if c.spec.study_drug and c.spec.text_patterns
        ]


MEMO_LIMIT = 10_000  # distinct spellings remembered per catalog: a hostile source cannot grow it further


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
    """Keep an answer for next time, up to ``MEMO_LIMIT`` of them."""
    if len(memo) < MEMO_LIMIT:
        memo[key] = value


def load_catalog(mapping_dir: Path, site: str | None = None, overrides_dir: Path | None = None) -> Catalog:
    """Load concepts.toml, then a site's two override layers; raise MappingError.

    For ``site``: ``<mapping_dir>/sites/<site>.toml`` (shipped with the
    mapping folder, read only), then ``<overrides_dir>/<site>.toml`` (the
    site's own fixes, written by ``adapter.mapping.overrides``), each only if
    it exists.  A later layer may re-map or ignore what an earlier site layer
    said; nothing may contradict concepts.toml.  The catalog version hashes
    every file that was read, so an absent fix file leaves it unchanged.
    """
    concepts_path = mapping_dir / CONCEPTS_FILE
    central_text, central_raw = _read_toml(concepts_path)
    central = _validate(CatalogFile, central_raw, concepts_path, central_text)
    systems = central.systems

    digest = hashlib.sha256(central_text.encode())
    synonyms_path = mapping_dir / SYNONYMS_FILE
    if synonyms_path.exists():  # it decides which unknown standard codes are issues (adapter.mapping.triage)
        digest.update(b"\0synonyms\0" + synonyms_path.read_bytes())
    concepts: dict[str, Concept] = {}
    codes: dict[tuple[str, str], str] = {}
    sources: dict[tuple[str, str], str] = {}
    aliases = dict(central.system_aliases)

    def parse_code(text: str, where: str) -> tuple[str, str]:
        system, sep, code = text.partition("|")
        if not sep or not system or not code:
            raise errors.MappingError(f'{where}: code {text!r} must be written "system|code"')
        if system not in systems and ":" not in system:
            known = ", ".join(sorted(systems))
            raise errors.MappingError(
                f"{where}: code {text!r} names the code system {system!r}, which is neither a name from "
                f"[systems] ({known}) nor a URL or urn"
            )
        return canonical(systems.get(system, system), aliases), code

    for index, spec in enumerate(central.concepts):
        where = f"{concepts_path} line {_concept_line(central_text, index)} (concept {spec.id!r})"
        if spec.id in concepts:
            raise errors.MappingError(f"{where}: concept id {spec.id!r} is defined twice")
        for unit in (spec.unit, *spec.accepted_units):
            if unit is not None and not unit.startswith("{") and not units.is_known(unit):
                raise errors.MappingError(f"{where}: unit {unit!r} is not a known UCUM unit")
        answers = {parse_code(a, where): v for a, v in spec.answers.items()}
        qualitative = {
            parse_code(code, where): result for result, listed in spec.qualitative.items() for code in listed
        }
        concepts[spec.id] = Concept(spec=spec, answers=answers, qualitative=qualitative)
        for text in spec.codes:
            key = parse_code(text, where)
            if key in codes and codes[key] != spec.id:
                raise errors.MappingError(
                    f"{where}: code {text!r} already means concept {codes[key]!r}; "
                    "one code can mean only one concept"
                )
            codes[key] = spec.id
            sources[key] = "central"

    unit_spellings: dict[str, str] = {}
    ignored: dict[tuple[str, str], str] = {}
    if site is not None:
        layers = [(mapping_dir / SITES_DIR / f"{site}.toml", "site", b"\0site\0")]
        if overrides_dir is not None:
            layers.append((overrides_dir / f"{site}.toml", "override", b"\0override\0"))
        for site_path, layer, marker in layers:
            if not site_path.exists():
                continue
            site_text, site_raw = _read_toml(site_path)
            override = _validate(SiteOverrideFile, site_raw, site_path, site_text)
            digest.update(marker + site_text.encode())
            layer_keys: set[tuple[str, str]] = set()
            for text, concept_id in override.codes.items():
                where = f"{site_path} [codes] {text!r}"
                if concept_id not in concepts:
                    raise errors.MappingError(
                        f"{where}: unknown concept {concept_id!r}; known: {', '.join(sorted(concepts))}"
                    )
                key = parse_code(text, where)
                if sources.get(key) == "central" and codes[key] != concept_id:
                    raise errors.MappingError(
                        f"{where}: conflicts with concepts.toml, which maps this code to "
                        f"{codes[key]!r}; one code can mean only one concept"
                    )
                if key in layer_keys and codes[key] != concept_id:
                    raise errors.MappingError(
                        f"{where}: the file maps this code to {codes[key]!r} too; "
                        "one code can mean only one concept"
                    )
                # A site's own fix outranks the mapping folder's sites/<site>.toml.
                ignored.pop(key, None)
                codes[key] = concept_id
                if sources.get(key) != "central":
                    sources[key] = layer
                layer_keys.add(key)
            for spelling, ucum in override.units.items():
                if not units.is_known(ucum):
                    raise errors.MappingError(
                        f"{site_path} [units] {spelling!r}: {ucum!r} is not a UCUM unit the adapter reads"
                    )
                unit_spellings[spelling.strip()] = ucum
            for text, reason in override.ignored_codes.items():
                key = parse_code(text, f"{site_path} [ignored_codes] {text!r}")
                if key in codes and (sources.get(key) == "central" or key in layer_keys):
                    raise errors.MappingError(
                        f"{site_path} [ignored_codes] {text!r}: this code maps to {codes[key]!r}; "
                        "a code cannot be both mapped and ignored"
                    )
                if key in codes:  # mapped by the mapping folder's site file; the site's own fix wins
                    del codes[key]
                    sources.pop(key, None)
                ignored[key] = reason

    return Catalog(
        study=central.catalog.get("study", "unknown"),
        site=site,
        version=digest.hexdigest()[:12],
        concepts=concepts,
        codes=codes,
        system_aliases=aliases,
        unit_spellings=unit_spellings,
        ignored_codes=ignored,
        code_sources=sources,
        short_names=dict(systems),
        mapping_dir=mapping_dir,
    )


def _read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.MappingError(f"{path}: cannot read mapping file ({exc.strerror or exc})") from exc
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise errors.MappingError(f"{path}: not valid TOML: {exc}") from exc


def _validate(model: type[M], raw: dict[str, Any], path: Path, text: str) -> M:
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = err["loc"]
            where = ".".join(str(p) for p in loc)
            if len(loc) >= 2 and loc[0] == "concepts" and isinstance(loc[1], int):
                where = f"line {_concept_line(text, loc[1])} concepts[{loc[1]}]." + ".".join(
                    str(p) for p in loc[2:]
                )
            problems.append(f"  - {where}: {err['msg'].removeprefix('Value error, ')}")
        raise errors.MappingError(f"{path}: invalid mapping file\n" + "\n".join(problems)) from None


def _concept_line(text: str, index: int) -> int:
    """Line number of the index-th ``[[concepts]]`` header, for error messages."""
    count = -1
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() == "[[concepts]]":
            count += 1
            if count == index:
                return number
    return 0
