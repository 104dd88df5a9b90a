"""Roster errors name line and column but never echo an identifier (an MRN)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter import errors, roster

HEADER = "identifier_system,identifier_value,subject_id,enrolment_date\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "urn:mrn,MRN123,S-1,2025-01-01\nurn:mrn,MRN123,S-2,\n",
            "line 3: the same patient identifier as line 2",
        ),
        (
            "urn:mrn,MRN123,S-1,2025-01-01\nurn:mrn,MRN456,S-1,\n",
            "line 3: subject_id S-1 already used on line 2",
        ),
        ("urn:mrn,MRN123,,2025-01-01\n", "line 2: column subject_id is empty"),
        ("urn:mrn,MRN123,S-1,01/02/2025\n", "line 2: enrolment_date must be a date"),
    ],
)
def test_bad_roster_lines(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "roster.csv"
    path.write_text(HEADER + body)
    with pytest.raises(errors.ConfigError) as caught:
        roster.load_roster(path)
    assert message in str(caught.value)
    assert "MRN" not in str(caught.value)


def test_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "roster.csv"
    path.write_text("system,value,subject\n")
    with pytest.raises(errors.ConfigError, match="missing column"):
        roster.load_roster(path)


def test_match_by_identifier(tmp_path: Path) -> None:
    path = tmp_path / "roster.csv"
    path.write_text(HEADER + "urn:mrn,MRN123,S-1,2025-01-01\n")
    loaded = roster.load_roster(path)
    assert loaded.subject_for_identifiers([("urn:other", "x"), ("urn:mrn", "MRN123")]) == "S-1"
    assert loaded.subject_for_identifiers([("urn:mrn", "MRN999")]) is None
    assert roster.patient_identifiers({"identifier": [{"system": "urn:mrn", "value": " MRN123 "}]}) == [
        ("urn:mrn", "MRN123")
    ]
