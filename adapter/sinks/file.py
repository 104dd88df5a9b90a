"""The file sink: the trial repository as NDJSON files plus a manifest.

Default sink and the one the demo uses.  One ``<RecordType>.ndjson`` per
record type holds the current state (retracted records are removed), sorted
by (subject, record id) so the same state always gives the same bytes and a
golden test can compare them.  Each file is written to a temporary name and
renamed into place (atomic on POSIX), so a crash never leaves a half file;
re-delivering a batch rewrites identical content.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from adapter.sinks.base import Delivery, DeliveryResult

MANIFEST = "manifest.json"


class FileSink:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.description = f"file:{folder}"

    def deliver(self, batch: Sequence[Delivery]) -> list[DeliveryResult]:
        by_type: dict[str, list[Delivery]] = defaultdict(list)
        for item in batch:
            by_type[item.record_type].append(item)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for record_type, items in by_type.items():
                self._apply(record_type, items)
            self._write_manifest()
        except OSError as exc:
            return [
                DeliveryResult(item.item_id, ok=False, error=f"cannot write {self.folder}: {exc}")
                for item in batch
            ]
        return [DeliveryResult(item.item_id, ok=True) for item in batch]

    def _apply(self, record_type: str, items: list[Delivery]) -> None:
        path = self.folder / f"{record_type}.ndjson"
        current = self._read(path)
        for item in items:
            if item.operation == "upsert":
                current[item.record_id] = item.payload
            else:
                current.pop(item.record_id, None)
        ordered = sorted(current.values(), key=lambda r: (str(r.get("subject_id")), str(r.get("record_id"))))
        data = b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in ordered)
        _atomic_write(path, data)

    @staticmethod
    def _read(path: Path) -> dict[str, dict[str, Any]]:
        if not path.exists():
            return {}
        records: dict[str, dict[str, Any]] = {}
        with path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    record = orjson.loads(line)
                    records[record["record_id"]] = record
        return records

    def _write_manifest(self) -> None:
        files = {}
        for path in sorted(self.folder.glob("*.ndjson")):
            data = path.read_bytes()
            files[path.name] = {
                "records": data.count(b"\n"),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        manifest = {"files": files, "updated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        _atomic_write(
            self.folder / MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        )


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
