"""What a data manager needs to see of a source resource, and nothing more.

The stored raw resource (``SourceResource.raw``) is the site's own FHIR
JSON; it may carry a patient display name or identifiers.  A glimpse takes
only the fields that explain a mapping issue: the code, the value and its
unit, the clinical time and the status, so a page can never show more by
accident.  Each is cut to ``MAX_CHARS``: a site can send a 50 MB valueString,
and a glimpse goes into every row of the worklist and the CSV export.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_CHARS = 200  # longer than any real code, display, value or time; cut with an ellipsis


@dataclass(frozen=True)
class SourceGlimpse:
    resource_type: str
    code: str | None = None
    display: str | None = None
    value: str | None = None
    unit: str | None = None
    time: str | None = None
    status: str | None = None


def glimpse(raw: dict[str, Any]) -> SourceGlimpse:
    resource_type = str(raw.get("resourceType", ""))
    codeable = raw.get("code") or raw.get("medicationCodeableConcept") or {}
    code, display = _first_coding(codeable)
    value, unit = _value(raw)
    return SourceGlimpse(
        resource_type=resource_type,
        code=code,
        display=display,
        value=value,
        unit=unit,
        time=_time(raw),
        status=_text(raw.get("status")),
    )


def _first_coding(codeable: Any) -> tuple[str | None, str | None]:
    if not isinstance(codeable, dict):
        return None, None
    text = _text(codeable.get("text"))
    for coding in codeable.get("coding") or []:
        if isinstance(coding, dict) and coding.get("code"):
            system = _text(coding.get("system")) or ""
            return f"{system}|{coding['code']}", _text(coding.get("display")) or text
    return None, text


def _value(raw: dict[str, Any]) -> tuple[str | None, str | None]:
    quantity = raw.get("valueQuantity")
    if quantity is None:
        dose = (raw.get("dosage") or {}).get("dose") if isinstance(raw.get("dosage"), dict) else None
        quantity = dose
    if isinstance(quantity, dict):
        value = quantity.get("value")
        comparator = _text(quantity.get("comparator")) or ""
        unit = _text(quantity.get("unit")) or _text(quantity.get("code"))
        return (_text(f"{comparator}{value}") if value is not None else None), unit
    for key in ("valueString", "valueInteger", "valueDecimal", "valueBoolean"):
        if key in raw:
            return _text(raw[key]), None
    concept = raw.get("valueCodeableConcept")
    if isinstance(concept, dict):
        code, display = _first_coding(concept)
        return display or code, None
    return None, None


def _time(raw: dict[str, Any]) -> str | None:
    for key in ("effectiveDateTime", "effectiveInstant", "performedDateTime"):
        if raw.get(key):
            return _text(raw[key])
    for key in ("effectivePeriod", "performedPeriod"):
        period = raw.get(key)
        if isinstance(period, dict) and (period.get("start") or period.get("end")):
            start, end = _text(period.get("start")) or "?", _text(period.get("end"))
            return f"{start} – {end}" if end else start
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"
