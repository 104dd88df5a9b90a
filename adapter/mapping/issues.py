"""Typed mapping issues: the reason a source value did not become a fact.

Nothing is dropped silently (DESIGN.md §3): every source resource either
yields facts or at least one issue.  An issue has a stable ``key`` so that
re-running a sync finds the same issue again instead of adding a duplicate.
Issues carry no PHI: the subject is a trial subject id (or ``None`` when the
patient is not on the roster), the source is a resource reference, and the
detail text never quotes names or identifiers.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class IssueKind(StrEnum):
    """Every reason the adapter can give for not turning a value into a fact."""

    UNKNOWN_CODE = "unknown_code"
    UNKNOWN_UNIT = "unknown_unit"
    UNIT_NOT_CONVERTIBLE = "unit_not_convertible"
    IMPLAUSIBLE_VALUE = "implausible_value"
    MISSING_VALUE = "missing_value"
    MISSING_TIME = "missing_time"
    NOT_FINAL = "not_final"
    PATIENT_NOT_ON_ROSTER = "patient_not_on_roster"
    SUBJECT_NOT_FOUND = "subject_not_found"  # a roster subject no Patient at the site carries
    STUDY_DRUG_TEXT_ONLY = "study_drug_text_only"
    AMBIGUOUS_MATCH = "ambiguous_match"
    WRONG_RESOURCE_TYPE = "wrong_resource_type"  # e.g. a drug's code on an Observation
    INVALID_RESOURCE = "invalid_resource"
    UNKNOWN_SUBJECT = "unknown_subject"
    DELIVERY_FAILED = "delivery_failed"


class MappingIssue(BaseModel):
    """One explained problem with one source resource (or one local code).

    ``scope`` is what the issue is about: a resource reference such as
    ``Observation/123`` for most kinds, or ``code:<system>|<code>`` for an
    unknown code, so one unmapped local code used by ten thousand results is
    one issue for a data manager, not ten thousand.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    site: str
    kind: IssueKind
    scope: str
    subject_id: str | None = None
    concept: str | None = None
    detail: str
    source_refs: tuple[str, ...] = ()
    code: str | None = None
    unit: str | None = None
    value: str | None = None

    @property
    def key(self) -> str:
        """Stable identity: re-finding the same problem never duplicates it."""
        return f"{self.site}|{self.kind.value}|{self.scope}"
