"""Every search result is checked against the search that asked for it.

A FHIR server may "return additional results it finds relevant"
(https://hl7.org/fhir/R4/search.html#summary), silently ignore a parameter
it does not support (unless it honours ``Prefer: handling=strict``), ignore
``_lastUpdated``, or hand out next links that lose the search's parameters,
so that the second page is a page of *every* patient's data.  The adapter
never trusts a server to have answered the question it asked: before a page
is handed to the sync, each resource on it must fit the search:

- its type is the searched type;
- a data search (``patient=``): its subject is one of the searched patients;
- an Observation search by ``code``: one of its codings is a searched code,
  and by ``category``: one of its categories is a searched one;
- an incremental search (``_lastUpdated=gt…``): its ``meta.lastUpdated``,
  when it has one, is after the asked moment;
- a Patient search by ``identifier``: it carries one of the searched
  identifiers.

The first resource that does not fit raises ``errors.ServerFault`` naming
what the server did, in words a site IT team can act on, and the setting
that adapts to it.  The page is then not stored: a server that answered
another question cannot be trusted to have answered the asked one in full.
The message names types, parameters and settings, never a patient id.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from adapter import errors

# Search parameters that narrow a search; a next link must keep each of them.
FILTER_PARAMS = ("patient", "subject", "identifier", "code", "category", "_lastUpdated")


@dataclass(frozen=True)
class Expected:
    """What one search asked for, in the form its results are compared with."""

    resource_type: str
    patients: frozenset[str] | None = None  # "Patient/<id>" refs; None: not a patient search
    codes: frozenset[tuple[str, str]] | None = None  # (system, code); None: any code
    categories: frozenset[str] | None = None  # category codes; None: any category
    since: dt.datetime | None = None  # results must be updated after this
    identifiers: frozenset[tuple[str, str]] | None = None  # (system, value) of a Patient search
    ids: frozenset[str] | None = None  # _id

    @classmethod
    def of_search(cls, resource_type: str, params: Mapping[str, str]) -> Expected:
        """The expectations of a search, read from its own parameters (as sent)."""
        patients = params.get("patient") or params.get("subject")
        codes = params.get("code")
        categories = params.get("category")
        since = params.get("_lastUpdated")
        identifiers = params.get("identifier")
        return cls(
            resource_type=resource_type,
            patients=frozenset(_patient_ref(value) for value in split_or(patients)) if patients else None,
            codes=frozenset(_token(value) for value in split_or(codes)) if codes else None,
            categories=frozenset(_token(value)[1] for value in split_or(categories)) if categories else None,
            since=_since(since) if since else None,
            identifiers=frozenset(_token(value) for value in split_or(identifiers)) if identifiers else None,
            ids=frozenset(split_or(params["_id"])) if params.get("_id") else None,
        )


def split_or(value: str) -> list[str]:
    """The values of a comma-separated OR-list, honouring ``\\,`` escapes, unescaped."""
    values: list[str] = []
    current: list[str] = []
    escaped = False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            values.append("".join(current))
            current = []
        else:
            current.append(char)
    values.append("".join(current))
    return values


def _token(value: str) -> tuple[str, str]:
    """``system|code`` (escaped ``\\|`` kept in its part) as a pair; a bare code has system ""."""
    escaped = False
    parts: list[str] = []
    current: list[str] = []
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|" and not parts:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])


def _patient_ref(value: str) -> str:
    return value if "/" in value else f"Patient/{value}"


def _since(value: str) -> dt.datetime | None:
    text = value[2:] if value[:2] in ("gt", "ge", "sa") else value
    return _instant(text)


def _instant(text: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def check(expected: Expected, resource: dict[str, Any], where: str) -> None:
    """Raise ``ServerFault`` unless ``resource`` fits the search; ``where`` names the search."""
    kind = resource.get("resourceType")
    if kind != expected.resource_type:
        raise _fault(
            expected,
            "wrong_type",
            f"{where}: the server answered a {expected.resource_type} search with {str(kind)[:40]} resources",
        )
    if expected.ids is not None and resource.get("id") not in expected.ids:
        raise _fault(
            expected,
            "unasked_id",
            f"{where}: the server returned {expected.resource_type} resources that were not asked for "
            "(it ignored the _id parameter)",
        )
    if expected.patients is not None and _subject(resource) not in expected.patients:
        raise _fault(
            expected,
            "unasked_patient",
            f"{where}: the server returned {expected.resource_type} resources of patients that were not "
            "asked for (it ignored or only partly applied the patient parameter)",
            setting="patient_batch_size",
        )
    if expected.codes is not None and not _has_code(resource.get("code"), expected.codes):
        raise _fault(
            expected,
            "unasked_code",
            f"{where}: the server returned {expected.resource_type} resources with codes that were not "
            "asked for (it ignored the code parameter)",
        )
    if expected.categories is not None and not _has_category(resource, expected.categories):
        raise _fault(
            expected,
            "unasked_category",
            f"{where}: the server returned {expected.resource_type} resources outside the asked "
            "categories (it ignored the category parameter)",
            setting="observation_category",
        )
    if expected.since is not None:
        updated = _last_updated(resource)
        if updated is not None and updated <= expected.since:
            raise _fault(
                expected,
                "last_updated_ignored",
                f"{where}: the server returned {expected.resource_type} resources last updated before the "
                "asked _lastUpdated, so it ignores _lastUpdated and incremental passes cannot work; set "
                "incremental = false for this source (every pass then reads everything), or use a "
                "fhir-bulk source with _since",
                setting="incremental",
            )


def asked_patient(expected: Expected, resource: dict[str, Any]) -> bool:
    """Whether a Patient found by an identifier search carries one of the searched identifiers.

    A Patient search may answer more patients than asked (the FHIR search
    page allows "additional results"; Epic's Patient search matches like
    ``$match``).  Those are dropped, not a fault: nothing is read for a
    patient the roster does not name, and the link needs an exact identifier.
    """
    if expected.identifiers is None:
        return True
    return _carries(resource, expected.identifiers)


def lost_params(resource_type: str, sent: Mapping[str, str], next_url: str) -> list[str]:
    """The filter parameters a next link lost, if it reads as a plain search URL.

    A link to ``<base>/<type>?…`` is the search URL with paging parameters:
    it must keep every filter parameter the search sent, with the same values
    (in any order).  A link elsewhere (HAPI's ``<base>?_getpages=…``, a
    vendor's session URL) is an opaque continuation, the server keeping the
    search itself; only its results can tell, and they are checked.
    """
    parts = urllib.parse.urlsplit(next_url)
    if parts.path.rstrip("/").rsplit("/", 1)[-1] != resource_type:
        return []
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    lost = []
    for name, value in sent.items():
        if name not in FILTER_PARAMS:
            continue
        kept = [sorted(split_or(given)) for given in query.get(name, [])]
        if sorted(split_or(value)) not in kept:
            lost.append(name)
    return lost


def repaired(next_url: str, expected_params: Mapping[str, str], lost: Iterable[str]) -> str:
    """``next_url`` with the lost filter parameters put back (values as the search sent them)."""
    parts = urllib.parse.urlsplit(next_url)
    lost = set(lost)
    pairs = [
        (name, value)
        for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if name not in lost
    ]
    pairs += [(name, expected_params[name]) for name in expected_params if name in lost]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(pairs)))


def _fault(expected: Expected, fault: str, message: str, *, setting: str | None = None) -> errors.ServerFault:
    return errors.ServerFault(
        message + "; nothing from this page was stored, and what earlier pages stored stays",
        fault=fault,
        resource_type=expected.resource_type,
        setting=setting,
    )


def _subject(resource: dict[str, Any]) -> str | None:
    subject = resource.get("subject") or resource.get("patient")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(reference, str):
        return None
    return "/".join(reference.split("/_history/")[0].rstrip("/").split("/")[-2:])


def _codings(concept: object) -> list[dict[str, Any]]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return [c for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []


def _has_code(concept: object, codes: frozenset[tuple[str, str]]) -> bool:
    for coding in _codings(concept):
        system, code = coding.get("system"), coding.get("code")
        if (system, code) in codes or ("", code) in codes:
            return True
    return False


def _has_category(resource: dict[str, Any], categories: frozenset[str]) -> bool:
    found = resource.get("category")
    concepts = found if isinstance(found, list) else [found]
    return any(coding.get("code") in categories for concept in concepts for coding in _codings(concept))


def _carries(resource: dict[str, Any], identifiers: frozenset[tuple[str, str]]) -> bool:
    found = resource.get("identifier")
    pairs = {
        (i.get("system"), i.get("value"))
        for i in (found if isinstance(found, list) else [])
        if isinstance(i, dict)
    }
    return not pairs.isdisjoint(identifiers)


def _last_updated(resource: dict[str, Any]) -> dt.datetime | None:
    meta = resource.get("meta")
    stamp = meta.get("lastUpdated") if isinstance(meta, dict) else None
    return _instant(stamp) if isinstance(stamp, str) else None
