"""Typed mapping issues: the reason a source value did not become a fact.

Nothing is dropped silently (docs/design.md §3): every source resource either
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
    RETRACTION_HELD = "retraction_held"  # a pass would have retracted all or most of a type
    SERVER_FAULT = "server_fault"  # the site's server answered a search with results not asked for


# What usually resolves each kind, for the person looking at one (the console's
# issue page, ``trial-adapter issues show``).  Most kinds resolve by
# themselves once the site's data or the mapping changes: the next sync or
# re-map finds the problem gone and closes the issue.
GUIDANCE: dict[IssueKind, str] = {
    IssueKind.UNKNOWN_CODE: "Map the code to a protocol concept in the site's override file, or list it "
    "under [ignored_codes] if the protocol does not use it; the stored results are re-mapped at once.",
    IssueKind.UNKNOWN_UNIT: "Tell the adapter which UCUM unit this spelling means ([units] in the site's "
    "override file); the results are re-mapped at once.",
    IssueKind.UNIT_NOT_CONVERTIBLE: "The unit measures something else than the concept (a molar unit for a "
    "mass concept, say). Check that the code is mapped to the right concept, or ask the site which unit "
    "the value really has.",
    IssueKind.IMPLAUSIBLE_VALUE: "Check the value and its unit in the EHR. A wrong unit is fixed in the "
    "mapping; a typing error at the site is corrected there and resolves this at the next sync; a real "
    "extreme value can be ignored with a reason.",
    IssueKind.MISSING_VALUE: "The site sent the result without a value. It resolves when the site completes "
    "the result; ignore it if the test was never done.",
    IssueKind.MISSING_TIME: "The result has no usable date, or one coarser than a day. Ask the site to send "
    "the collection time; it resolves at the next sync.",
    IssueKind.NOT_FINAL: "Entries not final yet (preliminary, registered, in preparation) or cancelled are "
    "not used. It resolves by itself when the site finalizes the entry; nothing to do otherwise. (A dose "
    "not given, a procedure not done and an entry the site marked entered-in-error raise no issue: the "
    "subject's page lists them under History.)",
    IssueKind.PATIENT_NOT_ON_ROSTER: "Data arrived for a patient who is not on the roster. If the patient is "
    "enrolled, add the roster line; their stored data is mapped at the next sync. Otherwise ignore it.",
    IssueKind.SUBJECT_NOT_FOUND: "No Patient at the site carries this subject's roster identifier. Check "
    "the roster line (value and identifier system) against the EHR; it resolves once a Patient matches.",
    IssueKind.STUDY_DRUG_TEXT_ONLY: "The administration looks like the study drug but carries no code. Ask "
    "the site's pharmacy interface to send the RxNorm or NDC code; the adapter never guesses a dose.",
    IssueKind.AMBIGUOUS_MATCH: "The resource carries codes for several concepts. Fix the mapping so each "
    "code means one concept, or ask the site to correct the coding.",
    IssueKind.WRONG_RESOURCE_TYPE: "The code means a concept that this kind of resource cannot carry (a "
    "drug on an Observation). Check the code's mapping, or ask the site why it was sent this way.",
    IssueKind.INVALID_RESOURCE: "The resource is not valid FHIR R4; the detail names the fields. It "
    "resolves when the site's interface sends a corrected version.",
    IssueKind.UNKNOWN_SUBJECT: "The resource names no patient the adapter can follow. Ask the site's "
    "interface team; it resolves when a corrected version arrives.",
    IssueKind.DELIVERY_FAILED: "The trial repository refused or did not answer. Site IT: check "
    "`trial-adapter outbox` and the repository settings; the item is retried by itself.",
    IssueKind.SERVER_FAULT: "The site's FHIR server answered a search with results the search did not "
    "ask for (other patients, other codes, older changes, or next links that lost the search), so the "
    "adapter stopped reading that type and stored nothing of the page. Run trial-adapter check: its "
    "behaviour rows say what the server does and which source setting adapts to it. It resolves at the "
    "first pass that reads the type without a fault.",
    IssueKind.RETRACTION_HELD: "The source suddenly lists far fewer resources of this type, so nothing was "
    "retracted. Site IT: check the export file or the EHR search; once the resources are listed again "
    "this resolves at the next sync. If the site really deleted them, accept it with "
    "`trial-adapter accept-retraction`; the next sync then retracts them.",
}


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
