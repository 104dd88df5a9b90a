"""Canonical JSON and the content hashes built on it.

A record is sent again only when its hash changes, so every hash must come
from the same bytes for the same data: keys sorted, one serializer.  Kept
apart from the writes that use it because the sync, the outbox and the
repository bookkeeping all compare hashes and none of them owns the rule.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def canonical_json(data: Any) -> bytes:
    """Deterministic JSON bytes: the basis of every content hash."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def content_hash(data: Any) -> str:
    return hashlib.sha256(canonical_json(data)).hexdigest()


# Record fields that say where a record came from, not what it says: a new
# catalog version alone (any mapping fix changes it) must not re-send records.
PROVENANCE_FIELDS = frozenset({"catalog_version"})


def substance_hash(payload: dict[str, Any]) -> str:
    """The hash of what a record says: its payload without its provenance fields."""
    return content_hash({k: v for k, v in payload.items() if k not in PROVENANCE_FIELDS})
