"""trial-adapter: FHIR to protocol records for NCT06507514."""

__version__ = "0.1.0"
