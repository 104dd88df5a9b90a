"""Stable ids and references for the FHIR sink's resources.

Every id here is derived from an identifier, never drawn at random: the same
record gives the same Bundle, and delivering it again replaces what the
server has instead of adding to it.
"""

from __future__ import annotations

import urllib.parse
import uuid

# Stable fullUrls and Provenance ids: the same record gives the same Bundle.
FULL_URL_NAMESPACE = uuid.UUID("0b6f7a0e-3f7d-5a43-9c3e-2d8f4b1c6e55")


def full_url(resource_type: str, system: str, value: str) -> str:
    """A stable ``urn:uuid`` for a resource known by identifier, for references inside a Bundle."""
    return f"urn:uuid:{uuid.uuid5(FULL_URL_NAMESPACE, f'{resource_type}|{system}|{value}')}"


def search_token(system: str, value: str) -> str:
    """``identifier=system|value`` for a conditional URL (https://hl7.org/fhir/R4/search.html#token)."""
    return "identifier=" + urllib.parse.quote(f"{system}|{value}", safe=":/|")


def fixed_id(resource_type: str, system: str, value: str) -> str:
    """A server id derived from an identifier, for resources written by ``PUT Type/id``.

    The ``ta-`` prefix keeps it from ever being all digits, which servers
    such as HAPI reserve for ids they assign themselves.
    """
    return f"ta-{uuid.uuid5(FULL_URL_NAMESPACE, f'{resource_type}|{system}|{value}')}"


def provenance_id(record_id: str) -> str:
    """The Provenance of a record has a fixed id, so re-delivering replaces it instead of adding one."""
    return fixed_id("Provenance", "record", record_id)
