"""Pydantic's validation errors, told the way a person editing the TOML file reads them.

Site IT teams edit the config by hand, so each problem becomes one line:
the file, the key as written in TOML (``[[sites]] #2 (id "x") source.path``,
never pydantic's tuple), what is wrong, and the field's ``description`` as
what is expected.  Discriminator tags that pydantic puts into locations
(``'ndjson'``, ``'fhir-rest'``) are not keys anyone wrote and are left out.
"""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic import BaseModel

from adapter.config.sections import Config
from adapter.fhir import settings as fhir_settings
from adapter.sinks import settings as sink_settings


def explain(label: str, exc: pydantic.ValidationError, raw: dict[str, Any]) -> str:
    """Turn pydantic's errors into one line per problem: file, key, what is expected."""
    lines = [f"{label}: invalid configuration"]
    for err in exc.errors():
        key = _toml_key(err["loc"], raw)
        expected = _field_description(err["loc"])
        kind = err["type"]
        if kind == "missing":
            problem = "is required but missing"
        elif kind == "extra_forbidden":
            problem = "is not a known setting (check the spelling against config.example.toml)"
        elif kind == "union_tag_invalid":
            ctx = err.get("ctx", {})
            problem = f"kind {ctx.get('tag')!r} is not supported here; use one of {ctx.get('expected_tags')}"
        else:
            problem = err["msg"].removeprefix("Value error, ")
        line = f"  - {key}: {problem}"
        if expected and kind != "extra_forbidden":
            line += f"; expected {expected}"
        lines.append(line)
    return "\n".join(lines)


def _toml_key(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """Render a pydantic location as the key a person would look for in TOML.

    ``('sites', 1, 'source', 'path')`` becomes ``[[sites]] #2 (id "x") source.path``.
    Discriminator tags that pydantic inserts (``'ndjson'``) are dropped.
    """
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            site_id = node[item].get("id") if isinstance(node, list) and item < len(node) else None
            parts[-1] = f"[[{parts[-1]}]] #{item + 1}" + (f' (id "{site_id}")' if site_id else "")
            node = node[item] if isinstance(node, list) and item < len(node) else None
            continue
        if isinstance(node, dict) and item not in node and item in _tagged_models():
            continue  # discriminator tag, not a key the user wrote
        parts.append(str(item))
        node = node.get(item) if isinstance(node, dict) else None
    if not parts:
        return "(top level)"
    head, *rest = parts
    return head + ("" if not rest else (" " if head.startswith("[[") else ".") + ".".join(rest))


def _field_description(loc: tuple[Any, ...]) -> str | None:
    """Find the description of the field at ``loc`` by walking the models."""
    model: Any = Config
    description = None
    for item in loc:
        if isinstance(item, int) or not isinstance(item, str):
            continue
        fields = getattr(model, "model_fields", None)
        if fields is None or item not in fields:
            model = _tagged_models().get(item, model) if isinstance(item, str) else model
            continue
        field = fields[item]
        description = field.description
        model = _inner_model(field.annotation)
    return description


def _tagged_models() -> dict[str, Any]:
    """Discriminator tags pydantic puts into error locations, and the model each one picks."""
    return {**fhir_settings.TAGGED_MODELS, **sink_settings.TAGGED_MODELS}


def _inner_model(annotation: Any) -> Any:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
        inner = getattr(candidate, "__args__", ())
        for sub in inner:
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                return sub
    return None
