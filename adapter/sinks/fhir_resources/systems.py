"""The code and identifier systems the FHIR sink's resources use.

Standard code systems come from https://terminology.hl7.org, so any FHIR
reader knows them; the systems the adapter defines itself (record and
subject ids, our own codes, extensions) hang under one configurable prefix,
``Systems.base``, so a trial repository can give them its own canonical URL.
"""

from __future__ import annotations

from dataclasses import dataclass

# https://terminology.hl7.org: code systems every FHIR reader knows.
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
CPT = "http://www.ama-assn.org/go/cpt"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
SECURITY_INTEGRITY = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
CLINICALTRIALS_GOV = "https://clinicaltrials.gov"


@dataclass(frozen=True)
class Systems:
    """The identifier, code and extension systems, under one configurable prefix.

    A ``urn:`` prefix is joined with ``:``, an ``https://`` one with ``/``,
    so a repository with its own canonical URL gets resolvable-looking
    systems and extensions (``<base>/StructureDefinition/<name>``).
    """

    base: str

    def _join(self, *parts: str) -> str:
        separator = ":" if self.base.startswith("urn:") else "/"
        return separator.join((self.base, *parts))

    @property
    def record_id(self) -> str:
        return self._join("record-id")

    @property
    def subject_id(self) -> str:
        return self._join("subject-id")

    @property
    def study_id(self) -> str:
        return self._join("study-id")

    @property
    def codes(self) -> str:
        return self._join("codes")

    @property
    def criterion_status(self) -> str:
        return self._join("criterion-status")

    @property
    def source_hash(self) -> str:
        return self._join("source-hash")

    @property
    def site(self) -> str:
        return self._join("site")

    def catalog(self, version: str) -> str:
        return self._join("catalog", version)

    def extension(self, name: str) -> str:
        if self.base.startswith("urn:"):
            return self._join("extension", name)
        return self._join("StructureDefinition", name)
