"""The site roster: the one place where site identities meet trial subject ids.

A CSV kept by the site's study team (columns
``identifier_system,identifier_value,subject_id,enrolment_date``).  Patients are
matched by identifier (system + value), never by name (issue 3 §1).  Error
messages name the line and the column but never echo an identifier value,
because those are MRNs.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapter import errors

COLUMNS = ("identifier_system", "identifier_value", "subject_id", "enrolment_date")


@dataclass(frozen=True)
class RosterEntry:
    identifier_system: str
    identifier_value: str
    subject_id: str
    enrolment_date: dt.date | None


class Roster:
    """The roster entries, indexed by identifier and by subject id."""

    def __init__(self, entries: Iterable[RosterEntry]) -> None:
        self.entries = tuple(entries)
        self._by_identifier = {(e.identifier_system, e.identifier_value): e for e in self.entries}
        self._by_subject = {e.subject_id: e for e in self.entries}

    def subject_for_identifiers(self, identifiers: Iterable[tuple[str, str]]) -> str | None:
        """The subject id of the first identifier found on the roster."""
        for key in identifiers:
            entry = self._by_identifier.get(key)
            if entry is not None:
                return entry.subject_id
        return None

    def entry(self, subject_id: str) -> RosterEntry | None:
        return self._by_subject.get(subject_id)

    @property
    def subject_ids(self) -> list[str]:
        return sorted(self._by_subject)


def patient_identifiers(patient: dict[str, Any]) -> list[tuple[str, str]]:
    """(system, value) pairs of a raw Patient resource."""
    pairs = []
    for identifier in patient.get("identifier") or []:
        if isinstance(identifier, dict):
            system, value = identifier.get("system"), identifier.get("value")
            if isinstance(system, str) and isinstance(value, str):
                pairs.append((system.strip(), value.strip()))
    return pairs


def load_roster(path: Path) -> Roster:
    """Read and check the roster CSV; raise ConfigError naming line and column."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise errors.ConfigError(
            f"{path}: cannot read the roster ({exc.strerror or exc}); check [[sites]] roster"
        ) from exc
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise errors.ConfigError(
                f"{path}: roster is missing column(s) {', '.join(missing)}; "
                f"the header must be {','.join(COLUMNS)}"
            )
        entries: list[RosterEntry] = []
        seen_ids: dict[tuple[str, str], int] = {}
        seen_subjects: dict[str, int] = {}
        for line, row in enumerate(reader, start=2):
            entries.append(_entry(path, line, row, seen_ids, seen_subjects))
    return Roster(entries)


def _entry(
    path: Path,
    line: int,
    row: dict[str, str],
    seen_ids: dict[tuple[str, str], int],
    seen_subjects: dict[str, int],
) -> RosterEntry:
    values = {c: (row.get(c) or "").strip() for c in COLUMNS}
    for column in ("identifier_system", "identifier_value", "subject_id"):
        if not values[column]:
            raise errors.ConfigError(f"{path} line {line}: column {column} is empty")
    key = (values["identifier_system"], values["identifier_value"])
    if key in seen_ids:
        raise errors.ConfigError(
            f"{path} line {line}: the same patient identifier as line {seen_ids[key]}; each patient once"
        )
    if values["subject_id"] in seen_subjects:
        raise errors.ConfigError(
            f"{path} line {line}: subject_id {values['subject_id']} already used on line "
            f"{seen_subjects[values['subject_id']]}"
        )
    seen_ids[key] = line
    seen_subjects[values["subject_id"]] = line
    enrolment = None
    if values["enrolment_date"]:
        try:
            enrolment = dt.date.fromisoformat(values["enrolment_date"])
        except ValueError:
            raise errors.ConfigError(
                f"{path} line {line}: enrolment_date must be a date like 2025-03-01"
            ) from None
    return RosterEntry(key[0], key[1], values["subject_id"], enrolment)
