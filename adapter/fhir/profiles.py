"""Known behaviour of EHR vendors' FHIR search APIs, as defaults for a ``fhir-rest`` source.

A site names its server with ``server_profile``; every setting the profile
lists becomes the default of that site's source, and a key the site writes
itself still wins.  Each default comes from the vendor's public
documentation, cited in docs/sources.md ("Server profiles"); a setting the
documentation leaves open is not set, so it keeps the ``generic`` value.
``generic`` assumes only what the FHIR R4 specification promises and lets the
result checks and ``trial-adapter check`` find the rest.
"""

from __future__ import annotations

from typing import Any, Literal

ServerProfile = Literal["generic", "epic", "oracle-health", "hapi"]

# Setting name -> value, per profile.  Only keys of ``RestSource``, and only
# values a public document states (URLs in docs/sources.md, "Server profiles").
PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    # The adapter's own defaults; nothing beyond FHIR R4 (hl7.org/fhir/R4/search.html).
    "generic": {},
    "epic": {
        # fhir.epic.com error table, 4112: a search with several different patient
        # IDs is an invalid parameter combination; the R4 CapabilityStatement
        # describes `patient` (and Patient `identifier`) as a single value.
        "patient_batch_size": 1,
        # Epic R4 CapabilityStatement: no _lastUpdated search parameter on
        # Observation, MedicationAdministration or Procedure; error 4122: an
        # unknown parameter is ignored with a warning.
        "incremental": False,
    },
    "oracle-health": {
        # Oracle Health Millennium R4 docs, Patient search: identifier "may be
        # provided exactly once and may have only a single value"; `patient` on
        # Observation/MedicationAdministration/Procedure is one patient.
        "patient_batch_size": 1,
        # Oracle Health Millennium R4 docs, MedicationAdministration search: no
        # _lastUpdated parameter (Observation's counts clinically significant
        # updates only).
        "incremental": False,
    },
    "hapi": {
        # hapifhir.io, built-in server interceptors ("Allow Lenient Searching"):
        # unknown search parameters fail by default; Prefer: handling=strict is read.
        "strict_search": True,
    },
}


def defaults(profile: str) -> dict[str, Any]:
    """The settings a profile sets (a copy; unknown profiles are refused by the config model)."""
    return dict(PROFILE_DEFAULTS.get(profile, {}))
