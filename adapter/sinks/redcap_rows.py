"""Protocol records as rows of a REDCap flat import, through the field map in the config.

REDCap's flat JSON format is one object per (record, event, repeat
instance) with the project's field names as keys and every value a string
(REDCap API documentation, "Import Records", ``type=flat``).  The reserved
keys are ``redcap_event_name`` (longitudinal projects: the *unique* event
name, e.g. ``baseline_arm_1``), ``redcap_repeat_instrument`` and
``redcap_repeat_instance`` (repeating instruments, e.g. one instance per
treatment cycle).

A record's fields are addressed by name, and nested ones by dotted path:
eligibility criteria by criterion name (``criteria.lvef.status``).  A list of
plain values (``dates``, ``flags``, ``evidence``) is one field, its values
space-separated.  A path the record does not have is an error, not a silent
blank: a typo in the map must not erase data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from adapter.sinks import settings as sink_settings

EVENT = "redcap_event_name"
REPEAT_INSTRUMENT = "redcap_repeat_instrument"
REPEAT_INSTANCE = "redcap_repeat_instance"
ROW_KEYS = (EVENT, REPEAT_INSTRUMENT, REPEAT_INSTANCE)


class NotMappable(ValueError):
    """The record cannot become a REDCap row with this field map; the item fails with this message."""


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """``{"a": {"b": 1}, "criteria": [{"criterion": "lvef", "status": ...}]}`` becomes
    ``{"a.b": 1, "criteria.lvef.status": ...}``."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list | tuple) and value and all(isinstance(v, dict) for v in value):
            for index, inner in enumerate(value):
                walk(f"{prefix}.{inner.get('criterion', index)}", inner)
        else:
            flat[prefix] = value

    walk("", record)
    return flat


def redcap_value(value: Any) -> str:
    """REDCap takes strings: blank for no value, 1/0 for booleans, lists space-separated."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return " ".join(redcap_value(v) for v in value)
    return str(value)


def render(template: str, flat: dict[str, Any], what: str) -> str:
    """Fill ``{field}`` placeholders of an event name or repeat instance from the record."""
    values = {}
    for name in sink_settings.template_fields(template):
        if name not in flat:
            raise NotMappable(f"{what} {template!r} names {name!r}, which the record does not have")
        values[name] = redcap_value(flat[name])
    text = template
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def row(
    record: dict[str, Any],
    field_map: sink_settings.RedcapRecordMap,
    record_id_field: str,
    *,
    blank: bool = False,
) -> dict[str, str]:
    """The flat-import row for ``record``; ``blank`` empties the mapped fields (a retraction)."""
    flat = flatten(record)
    out = {record_id_field: str(record["subject_id"])}
    record_type = record.get("record_type")
    if field_map.event:
        out[EVENT] = render(field_map.event, flat, f"[repository.records.{record_type}] event")
    if field_map.instrument and field_map.instance:
        instance = render(field_map.instance, flat, f"[repository.records.{record_type}] instance")
        if not instance.isdigit() or int(instance) < 1:
            raise NotMappable(
                f"[repository.records.{record_type}] instance {field_map.instance!r} gave {instance!r}, "
                "not a whole number >= 1"
            )
        out[REPEAT_INSTRUMENT] = field_map.instrument
        out[REPEAT_INSTANCE] = instance
    for path, field_name in field_map.fields.items():
        if path not in flat:
            raise NotMappable(
                f"[repository.records.{record_type}] fields names {path!r}, which {record_type} records "
                f"do not have; known: {', '.join(sorted(flat))}"
            )
        out[field_name] = "" if blank else redcap_value(flat[path])
    return out


def merged(rows: Iterable[dict[str, str]], record_id_field: str) -> list[dict[str, str]]:
    """Rows for the same (record, event, instrument, instance) joined into one, later values winning."""
    by_key: dict[tuple[str, ...], dict[str, str]] = {}
    for one in rows:
        key = (one[record_id_field], *(one.get(k, "") for k in ROW_KEYS))
        by_key.setdefault(key, {}).update(one)
    return list(by_key.values())
