"""How a source resource is validated before it is mapped: one entry point, ``validate``.

Two questions, one module each:

* Which models (``Mode``).  ``lean``, the default, uses ``lean_models``:
  every element the mapping engine reads is validated as fhir.resources R4B
  would, the rest is ignored, at ~30x the speed (``lean_models`` says why).
  ``r4b`` uses the full fhir.resources models, which also reject resources
  for elements the adapter never reads (e.g. to audit a site's conformance).
* How a date-time without an offset is read: as the site's local time, in
  either mode (``lenient``).

The mode is a parameter, passed down from the sync's entry point
(``adapter.sync.sync_site``'s ``validation``), never a global switch.
"""

from __future__ import annotations

from typing import Any, Literal
from zoneinfo import ZoneInfo

from fhir.resources.R4B import get_fhir_model_class

from adapter.fhir.validation import lean_models, lenient

__all__ = ["Mode", "model_for", "validate"]

Mode = Literal["lean", "r4b"]


def model_for(resource_type: str, mode: Mode = "lean") -> Any:
    """The model a resource of this type is validated with in ``mode``.

    A type the lean models do not declare (one the engine does not map) gets
    the full R4B model in either mode.
    """
    model = lean_models.model_for(resource_type) if mode == "lean" else None
    return model if model is not None else get_fhir_model_class(resource_type)


def validate(resource_type: str, raw: dict[str, Any], mode: Mode, timezone: ZoneInfo) -> Any:
    """``raw`` as a validated ``resource_type`` in ``mode``; offset-less date-times in ``timezone``.

    ``resource_type`` is the type the source listed ``raw`` under.  Raises
    ``pydantic.ValidationError`` for an invalid resource (the R4B models also
    raise ``KeyError``, ``TypeError`` or ``ValueError`` for some).
    """
    return lenient.model_validate(model_for(resource_type, mode), raw, timezone)
