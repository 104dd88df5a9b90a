"""fhir stage."""
