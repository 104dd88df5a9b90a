"""What of a source resource the state database keeps: only what re-mapping reads.

Raw resources stay on the site so a mapping fix can re-map them without
fetching again.  But real EHR resources carry far more than the adapter
reads, and much of it identifies the patient: ``subject.display`` with the
patient's name, ``subject.identifier`` with the MRN, a narrative ``text``
that repeats both, performers' names, notes, contained Patients,
extensions with a birth date.  None of it helps to re-map, so none of it is
stored (data minimisation at rest; a backup of the state database is then
much less of an EHR extract).

The kept fields are derived from the lean models
(``adapter.fhir.validation.lean_models``), which declare exactly what the
mapping engine reads, so a field the engine starts to read is kept without
anyone remembering to list it here; plus what validation looks at (every
alternative of a choice element, the ``_status`` explanation) and the
version stamp.  A reference keeps only its ``reference``, never its
``display`` or ``identifier``.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any

from pydantic import BaseModel

from adapter.fhir.validation import lean_models

Spec = dict[str, "Spec | None"]  # field -> what to keep inside it (None: the whole value)

_ALWAYS: Spec = {"resourceType": None, "id": None, "meta": {"versionId": None, "lastUpdated": None}}


def for_storage(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with only the fields the engine reads (a resource type it does not map: unchanged)."""
    spec = _resource_spec(str(raw.get("resourceType", "")))
    if spec is None:
        return raw
    pruned = _prune(raw, spec)
    return pruned if isinstance(pruned, dict) else raw


@functools.cache
def _resource_spec(resource_type: str) -> Spec | None:
    model = lean_models.model_for(resource_type)
    if model is None:
        return None
    spec: Spec = {**_model_spec(model), **_ALWAYS, "_status": None}
    for key in model.choices.keys:
        spec.setdefault(key, None)
    return spec


def _model_spec(model: type[BaseModel]) -> Spec:
    spec: Spec = {}
    for name, field in model.model_fields.items():
        spec[field.alias or name] = _annotation_spec(field.annotation)
    choices = getattr(model, "choices", None)
    for key in getattr(choices, "keys", ()):  # e.g. a component's value[x] alternatives
        spec.setdefault(key, None)
    return spec


def _annotation_spec(annotation: Any) -> Spec | None:
    """What to keep of a field's value: the union of the specs of every model it may hold."""
    models = list(_models_in(annotation))
    if not models:
        return None
    merged: Spec = {}
    for model in models:
        merged.update(_model_spec(model))
    return merged


def _models_in(annotation: Any) -> typing.Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from _models_in(typing.get_args(annotation)[0])
        return
    if origin in (typing.Union, types.UnionType, list, tuple):
        for argument in typing.get_args(annotation):
            yield from _models_in(argument)


def _prune(value: Any, spec: Spec) -> Any:
    """``value`` with only the keys ``spec`` names, at every depth.

    A key whose spec is None is kept whole without a call: most kept fields
    are leaves, and a call per leaf was most of the cost of storing a resource.
    """
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            if key in spec:
                inner = spec[key]
                kept[key] = item if inner is None else _prune(item, inner)
        return kept
    if isinstance(value, list):
        return [_prune(item, spec) for item in value]
    return value
