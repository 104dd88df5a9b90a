"""Talking to servers over the network, the same way for sources and sinks.

A site's FHIR server (``adapter.fhir``) and the trial repository
(``adapter.sinks``) are reached with the same config tables
(``[...tls]``, ``[...auth]`` with ``kind = "bearer"``), the same secret
files, the same TLS session and the same plain, PHI-safe words for what went
wrong.  This package is that shared layer; it knows nothing of FHIR
resources, sinks or the config file, so both sides (and ``adapter.config``)
can build on it without importing each other.
"""
