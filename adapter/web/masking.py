"""Masking source references for viewers.

Issues already hold no names or MRNs (``mapping.issues``), but their source
references (``Observation/123``) are keys into the hospital's EHR, and a
patient reference names the patient's id at the site.  A viewer (a monitor,
say) sees them only as the keyed hashes that also leave the site in
outgoing records (``privacy.hash_ref``): stable enough to say "this one",
useless for looking anything up.  Data managers, who must find the result in
the EHR to fix it, see them in clear.

Masking goes by *structure*, not by a pattern over text: the console knows
which fields are references (an issue's sources; the scope inside an issue
key, the keys an audit entry lists as ``issue``, ``issues_resolved`` and
``issues_opened``; the evidence of a record) and masks the whole field,
whatever characters a site put into its ids (``Observation/x12_ZY02413241``
has an underscore, which FHIR ids do not allow and sites send anyway).  The
one free text that names references, an issue's ``detail``, is masked by
replacing the issue's own references (from its scope and its sources) as
whole strings; a pattern for the shape of a reference runs afterwards only
as a safety net for details written by an older version or about a source
that has since gone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from adapter import privacy

# Sources and scopes that are not references: what follows the prefix names a
# code, a text, a trial subject, a file and line, an outbox item or a resource type.
NOT_REFERENCES = ("code:", "text:", "subject:", "file:", "derive:", "retire:", "outbox:", "audit:")
PATIENT_SCOPE = "patient:"  # patient_not_on_roster: ``patient:Patient/<id>``
# Audit details whose values are issue keys (``site|kind|scope``).
AUDIT_KEY_FIELDS = ("issue",)
AUDIT_KEY_LIST_FIELDS = ("issues_resolved", "issues_opened")

RESOURCE_TYPES = (
    "Observation", "MedicationAdministration", "MedicationRequest", "MedicationStatement",
    "Medication", "Procedure", "Patient", "Encounter", "Specimen", "DiagnosticReport", "Condition",
    "Group", "Practitioner", "Organization",
)  # fmt: skip
# The safety net: a resource type, a slash and anything up to white space or a quote
# (the adapter quotes site values with repr), without trailing punctuation.
SOURCE_REF = re.compile(rf"\b(?:{'|'.join(RESOURCE_TYPES)})/[^\s'\"<>]*[^\s'\"<>:;,.)\]]")


def is_reference(source: str) -> bool:
    """Whether an issue's source or scope is a resource reference (anything not known to be other)."""
    return not source.startswith((*NOT_REFERENCES, PATIENT_SCOPE))


def refs_of_scope(scope: str) -> tuple[str, ...]:
    """The references an issue's scope names: itself, or the patient of ``patient:``."""
    if scope.startswith(PATIENT_SCOPE):
        return (scope.removeprefix(PATIENT_SCOPE),)
    return (scope,) if is_reference(scope) else ()


def split_key(key: str) -> tuple[str, str, str] | None:
    """``site|kind|scope`` (``MappingIssue.key``); None for something else."""
    parts = key.split("|", 2)
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


class RefMask:
    """What a page or an export shows of references, for one user.

    Called as ``mask(text, site)`` it masks free text; the methods mask the
    structured fields.  Inactive (data managers and admins) it returns
    everything as it is.
    """

    def __init__(self, secret: bytes, *, active: bool) -> None:
        self._secret = secret
        self.active = active

    def ref(self, ref: str | None, site: str | None) -> str:
        """One reference, whatever characters its id has."""
        if ref is None:
            return ""
        if not self.active:
            return ref
        return privacy.hash_ref(self._secret, site or "", ref)

    def source(self, source: str | None, site: str | None) -> str:
        """An issue source: a reference is masked, ``derive:…``, ``file:…`` and the like are not."""
        if source is None:
            return ""
        return self.scope(source, site)

    def scope(self, scope: str | None, site: str | None) -> str:
        if scope is None:
            return ""
        if not self.active:
            return scope
        if scope.startswith(PATIENT_SCOPE):
            return PATIENT_SCOPE + self.ref(scope.removeprefix(PATIENT_SCOPE), site)
        return self.ref(scope, site) if is_reference(scope) else scope

    def key(self, key: str | None, site: str | None = None) -> str:
        """An issue key ``site|kind|scope`` with its scope masked (the site comes from the key)."""
        if key is None:
            return ""
        if not self.active:
            return key
        parts = split_key(key)
        if parts is None:
            return self.text(key, site)
        key_site, kind, scope = parts
        return f"{key_site}|{kind}|{self.scope(scope, key_site or site)}"

    def target(self, target: str | None, site: str | None) -> str:
        """An audit entry's target: an issue key (ignore, accepted retraction) or a mapping entry."""
        if target is None:
            return ""
        return self.key(target, site) if split_key(target) is not None else self.text(target, site)

    def text(self, text: str | None, site: str | None, refs: Iterable[str] = ()) -> str:
        """Free text: the given references replaced as whole strings, then the safety net."""
        if text is None:
            return ""
        if not self.active:
            return text
        known = sorted({r for r in refs if r}, key=len, reverse=True)
        if known:
            # Longest first, and never a prefix of a longer id ("Observation/x1" in "Observation/x12").
            alternatives = "|".join(map(re.escape, known))
            whole = re.compile(rf"(?:{alternatives})(?![A-Za-z0-9_\-]|\.[A-Za-z0-9_\-])")
            text = whole.sub(lambda m: self.ref(m.group(0), site), text)
        return SOURCE_REF.sub(lambda m: self.ref(m.group(0), site), text)

    def detail(self, issue: Any, sources: Iterable[str] = (), *, leading_ref: bool = True) -> str:
        """An issue's detail (an ``IssueRow``): its scope's and its sources' references masked.

        ``leading_ref=False`` drops the ``Observation/123: `` the detail starts
        with when the page shows the source beside it already (the worklist).
        """
        text = issue.detail or ""
        scope = issue.scope or ""
        if not leading_ref and is_reference(scope) and text.startswith(f"{scope}: "):
            text = text[len(scope) + 2 :]
        refs = (*refs_of_scope(scope), *(s for s in sources if is_reference(s)))
        return self.text(text, issue.site, refs)

    def audit_detail(self, detail: Mapping[str, Any], site: str | None) -> dict[str, Any]:
        """An audit entry's detail with the issue keys it lists masked, and free text checked."""
        if not self.active:
            return dict(detail)
        masked: dict[str, Any] = {}
        for name, value in detail.items():
            if name in AUDIT_KEY_FIELDS and isinstance(value, str):
                masked[name] = self.key(value, site)
            elif name in AUDIT_KEY_LIST_FIELDS and isinstance(value, list):
                masked[name] = [self.key(str(item), site) for item in value]
            elif isinstance(value, str):
                masked[name] = self.text(value, site)
            else:
                masked[name] = value
        return masked

    def __call__(self, text: str | None, site: str | None, refs: Iterable[str] = ()) -> str:
        return self.text(text, site, refs)
