"""Who a derivation is for, and the fields every record of that subject shares.

Records are keyed by (study, subject, record type, natural key) so that
re-deriving gives the same id (records.record_id); putting that in one place
keeps every derivation module from rebuilding it slightly differently.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from adapter.protocol import records

# How the subject's site reads an SpO2 reading with no oxygen record at all
# (``[[sites]] spo2_without_oxygen_record``, docs/design.md §4).
Spo2WithoutOxygenRecord = Literal["unknown", "room_air"]


class SubjectContext(BaseModel):
    """The subject being derived: roster facts that are not FHIR facts, and its site's practice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    study: str
    site: str
    subject_id: str
    enrolment_date: dt.date | None = None
    catalog_version: str
    spo2_without_oxygen_record: Spo2WithoutOxygenRecord = "unknown"

    def record_fields(
        self,
        record_type: records.RecordType,
        natural_key: str,
        *,
        on: dt.date | None,
        day0: dt.date | None,
        evidence: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """The common ``ProtocolRecord`` fields for a record dated ``on``."""
        return {
            "record_id": records.record_id(self.study, self.subject_id, record_type.value, natural_key),
            "study": self.study,
            "subject_id": self.subject_id,
            "catalog_version": self.catalog_version,
            "day_from_transplant": day_offset(on, day0),
            "evidence": evidence,
        }


def day_offset(on: dt.date | None, day0: dt.date | None) -> int | None:
    """Days from transplant day 0 (day 0 itself is 0, the day before is -1)."""
    if on is None or day0 is None:
        return None
    return (on - day0).days
