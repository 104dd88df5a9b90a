"""Validate a resource, reading date-times without an offset in the site's timezone.

FHIR requires an offset on every date-time with a time
(https://hl7.org/fhir/R4/datatypes.html#dateTime), yet interface engines and
older EHR facades often send ``2025-03-01T10:00:00`` or ``2025-03-01 10:00``:
the local wall-clock time.  Refusing those would turn every result of such a
site into an ``invalid_resource`` issue, though what they mean is plain: the
site's local time, which is how ``adapter.mapping.times`` already reads them.

So validation runs as usual, and only when *every* error is such a time does
it run again on a copy with the site's offset added to those values (the
stored source resource stays as the site sent it).  Any other error raises
the original exception, so the issue lists every real problem.  Valid
resources pay nothing: the repair runs only after a failed validation.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

import pydantic

NAIVE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$")


def model_validate(model: Any, raw: dict[str, Any], timezone: ZoneInfo) -> Any:
    """``model.model_validate(raw)``, accepting offset-less date-times as site-local times."""
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        naive = [e["loc"] for e in errors if isinstance(e.get("input"), str) and NAIVE_TIME.match(e["input"])]
        if not naive or len(naive) != len(errors):
            raise
        repaired = copy.deepcopy(raw)
        try:
            for location in naive:
                _replace(repaired, location, timezone)
        except (KeyError, IndexError, TypeError, ValueError):
            raise exc from None  # an error location the model reports differently: no repair
        return model.model_validate(repaired)


def with_offset(text: str, timezone: ZoneInfo) -> str:
    """``2025-03-01 10:00`` in ``Asia/Shanghai`` → ``2025-03-01T10:00:00+08:00``."""
    moment = dt.datetime.fromisoformat(text.replace(" ", "T", 1)).replace(tzinfo=timezone)
    return moment.isoformat()


def _replace(document: Any, location: tuple[int | str, ...], timezone: ZoneInfo) -> None:
    *path, last = location
    for step in path:
        document = document[step]
    document[last] = with_offset(document[last], timezone)
