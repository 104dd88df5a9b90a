"""Masking source references for viewers.

Issues already hold no names or MRNs (``mapping.issues``), but their source
references (``Observation/123``) are keys into the hospital's EHR.  A viewer
(a monitor, say) sees them only as the keyed hashes that also leave the site
in outgoing records (``privacy.hash_ref``): stable enough to say "this one",
useless for looking anything up.  Data managers, who must find the result in
the EHR to fix it, see them in clear.
"""

from __future__ import annotations

import re

from adapter import privacy

SOURCE_REF = re.compile(
    r"\b(?:Observation|MedicationAdministration|MedicationRequest|MedicationStatement|Procedure|"
    r"Patient|Encounter|Specimen|DiagnosticReport|Condition)/[A-Za-z0-9\-.]{1,64}"
)


class RefMask:
    """Callable used by templates and exports: ``mask(text, site)``."""

    def __init__(self, secret: bytes, *, active: bool) -> None:
        self._secret = secret
        self.active = active

    def __call__(self, text: str | None, site: str | None) -> str:
        if text is None:
            return ""
        if not self.active:
            return text
        return SOURCE_REF.sub(lambda m: privacy.hash_ref(self._secret, site or "", m.group(0)), text)
