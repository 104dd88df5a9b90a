"""The file sink: the trial repository as NDJSON files plus a manifest.

Default sink and the one the demo uses.  One ``<RecordType>.ndjson`` per
record type holds the current state (retracted records are removed), sorted
by (subject, record id) so the same state always gives the same bytes and a
golden test can compare them.  Each file is written to a temporary name and
renamed into place (atomic on POSIX), and the folder is fsynced before the
batch is acknowledged, so a crash never leaves a half file and never loses
an acknowledged record; re-delivering a batch rewrites identical content.

Every batch rewrites whole files, so the sink asks for large batches and
keeps what it last wrote in memory (checked against the file's inode, size
and mtime before use, so a file changed behind its back is read again):
without both, a long backlog costs time quadratic in its length
(bench/delivery_bench.py measures it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from adapter.sinks.base import Delivery, DeliveryResult, PlannedRequest, Probe

MANIFEST = "manifest.json"

Signature = tuple[int, int, int]  # inode, size, mtime in ns


@dataclass
class WrittenFile:
    """One record-type file as this sink last wrote it."""

    signature: Signature
    lines: dict[str, tuple[tuple[str, str], bytes]]  # record id -> (sort key, NDJSON line)
    records: int
    sha256: str


class FileSink:
    batch_size = 20_000

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.description = f"file:{folder}"
        self._written: dict[str, WrittenFile] = {}

    def deliver(self, batch: Sequence[Delivery]) -> list[DeliveryResult]:
        by_type: dict[str, list[Delivery]] = defaultdict(list)
        for item in batch:
            by_type[item.record_type].append(item)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for record_type, items in by_type.items():
                self._apply(self.folder / f"{record_type}.ndjson", items)
            self._write_manifest()
            _fsync_folder(self.folder)
        except OSError as exc:
            # A full disk or a missing mount fails every item alike: an outage.
            self._written.clear()
            return [
                DeliveryResult(
                    item.item_id, ok=False, error=f"cannot write {self.folder}: {exc}", outage=True
                )
                for item in batch
            ]
        return [DeliveryResult(item.item_id, ok=True) for item in batch]

    def preview(self, batch: Sequence[Delivery]) -> list[PlannedRequest]:
        """Per file: the records it would store or drop."""
        plans = []
        by_type: dict[str, list[Delivery]] = defaultdict(list)
        for item in batch:
            by_type[item.record_type].append(item)
        for record_type, items in by_type.items():
            body = [
                {"upsert": item.payload} if item.operation == "upsert" else {"remove": item.record_id}
                for item in items
            ]
            target = str(self.folder / f"{record_type}.ndjson")
            plans.append(PlannedRequest("WRITE", target, body, tuple(i.item_id for i in items)))
        return plans

    def probe(self) -> Probe:
        """Create and remove a temporary file in the folder (while it is missing: where it would be made).

        A folder that is missing but can be created is fine: the first
        delivery creates it.  Nothing is left behind either way.
        """
        where = self.folder
        while not where.exists() and where.parent != where:
            where = where.parent
        if not where.is_dir():
            return Probe(False, f"{where} is not a folder; point [repository] path at a folder")
        try:
            with tempfile.NamedTemporaryFile(dir=where, prefix=".trial-adapter-check-"):
                pass
        except OSError as exc:
            return Probe(
                False,
                f"cannot write to {where} ({exc.strerror or exc}); give the user running the adapter "
                "write access to it (under systemd also ReadWritePaths=, docs/site-it.md)",
            )
        if where == self.folder:
            return Probe(True, f"{self.folder}, writable")
        return Probe(
            True, f"{self.folder} does not exist yet; the first delivery creates it ({where} is writable)"
        )

    def _apply(self, path: Path, items: list[Delivery]) -> None:
        lines = dict(self._current(path).lines)
        for item in items:
            if item.operation == "upsert":
                key = (str(item.payload.get("subject_id")), str(item.payload.get("record_id")))
                lines[item.record_id] = (key, orjson.dumps(item.payload, option=orjson.OPT_SORT_KEYS) + b"\n")
            else:
                lines.pop(item.record_id, None)
        data = b"".join(line for _, line in sorted(lines.values()))
        _atomic_write(path, data)
        self._written[path.name] = WrittenFile(
            _signature(path), lines, len(lines), hashlib.sha256(data).hexdigest()
        )

    def _current(self, path: Path) -> WrittenFile:
        """What ``path`` holds: from memory if it is still the file this sink wrote, else read."""
        known = self._written.get(path.name)
        if known is not None and path.exists() and _signature(path) == known.signature:
            return known
        if not path.exists():
            return WrittenFile((0, 0, 0), {}, 0, "")
        lines: dict[str, tuple[tuple[str, str], bytes]] = {}
        data = path.read_bytes()
        for line in data.splitlines():
            if line.strip():
                record = orjson.loads(line)
                key = (str(record.get("subject_id")), str(record.get("record_id")))
                lines[record["record_id"]] = (key, orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n")
        return WrittenFile(_signature(path), lines, len(lines), hashlib.sha256(data).hexdigest())

    def _write_manifest(self) -> None:
        files = {}
        for path in sorted(self.folder.glob("*.ndjson")):
            known = self._written.get(path.name)
            if known is not None and _signature(path) == known.signature:
                files[path.name] = {"records": known.records, "sha256": known.sha256}
                continue
            data = path.read_bytes()
            files[path.name] = {"records": data.count(b"\n"), "sha256": hashlib.sha256(data).hexdigest()}
        manifest = {"files": files, "updated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        _atomic_write(
            self.folder / MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        )


def _signature(path: Path) -> Signature:
    stat = path.stat()
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_folder(folder: Path) -> None:
    """Make the renames durable: a record is acknowledged only once a power cut cannot undo it."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
