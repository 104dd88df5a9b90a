"""Protocol records as FHIR R4 resources: what a FHIR-literate reader expects to find.

Pure functions from a pseudonymized record (``adapter.protocol.records``, as
JSON) to resources; ``adapter.sinks.fhir`` puts them into transaction
Bundles.  The choices, and why, are in docs/fhir-sink.md.  One module per
part of the Bundle:

- ``systems``: the standard code systems and our own identifier, code and
  extension systems under one configurable prefix;
- ``ids``: stable fullUrls, server ids and conditional search tokens;
- ``subject``: the pseudonymous Patient, the ResearchStudy, the ResearchSubject;
- ``records``: one builder per protocol record type;
- ``provenance``: the keyed hashes of a record's sources and the mapping
  catalog version.

Nothing here knows a name, an MRN or a site resource id: the record is
already pseudonymized when it arrives (``adapter.privacy``).
"""

from adapter.sinks.fhir_resources.ids import fixed_id, full_url, provenance_id, search_token
from adapter.sinks.fhir_resources.provenance import provenance
from adapter.sinks.fhir_resources.records import NotExpressible, record_resource, resource_type_of
from adapter.sinks.fhir_resources.subject import patient, research_study, research_subject, study_identifier
from adapter.sinks.fhir_resources.systems import Systems

__all__ = [
    "NotExpressible",
    "Systems",
    "fixed_id",
    "full_url",
    "patient",
    "provenance",
    "provenance_id",
    "record_resource",
    "research_study",
    "research_subject",
    "resource_type_of",
    "search_token",
    "study_identifier",
]
