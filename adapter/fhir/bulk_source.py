"""The Bulk Data source: one ``$export`` per pass, read back like an NDJSON folder.

A pass starts with ``patients()``, so that is where the export runs: with
``_since`` = the transaction time of the last export a pass read completely
(minus an overlap, as the sync does for searches), or without ``_since`` the
first time.  The downloaded files are then read like the NDJSON folder
source, keeping only resources of the patients the sync asks for (a
``Patient/$export`` carries the whole hospital; those never enter the store).

Every page's watermark is the export's ``transactionTime``, the instant the
server vouches that the files are complete up to
(https://hl7.org/fhir/uv/bulkdata/export.html#response---complete-status).
If the sync asks for a type from scratch (first pass, ``--full``) while the
pass's export was incremental, a full export is made for it, so a full pass
really reads everything and may retire what vanished.

An export that was downloaded but not completely read (a crash mid-pass) is
read again by the next pass, from the page after the last committed one.

The export's ``deleted`` files (Bulk Data v2: what was deleted since
``_since``) ride on a type's last page, so its deletions are retired with
it and weighed together by the retraction guard; a resource the same export
also lists in its output was deleted and created again, and is not deleted.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from adapter.fhir import bulk, bundles, connect, history, http, medications, ndjson
from adapter.fhir import settings as fhir_settings
from adapter.fhir.ndjson import read_resources
from adapter.fhir.source import BadLine, Page, SourceLine

log = logging.getLogger(__name__)

OVERLAP = dt.timedelta(minutes=5)  # the sync's overlap, for late commits at the server
CONSUMED_FILE = "consumed.json"


class BulkExportSource:
    """A site's Bulk Data ``$export`` as a ``Source`` (see ``adapter.fhir.source``)."""

    def __init__(
        self,
        site: str,
        settings: fhir_settings.BulkSource,
        *,
        client: http.FhirClient | None = None,
        page_size: int = 500,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.site = site
        self.settings = settings
        self.page_size = page_size
        self._client = client
        self._sleep = sleep
        self._export: bulk.ExportResult | None = None
        self._complete_pass = False
        self._deleted: tuple[str, dict[str, list[str]]] | None = None  # (export id, refs by type)

    @property
    def client(self) -> http.FhirClient:
        if self._client is None:
            self._client = connect.client_for(self.site, self.settings)
        return self._client

    @property
    def requests_made(self) -> int:
        """HTTP requests sent to the site's server so far (kick-off, polls, downloads; every try)."""
        return self._client.requests_sent if self._client is not None else 0

    @property
    def exporter(self) -> bulk.BulkExport:
        return bulk.BulkExport(
            self.client,
            self.settings.work_dir,
            group_id=self.settings.group_id,
            poll_cap=self.settings.poll_cap_seconds,
            max_wait=self.settings.max_export_hours * 3600,
            sleep=self._sleep,
        )

    # Source ---------------------------------------------------------------

    @property
    def complete_listing(self) -> bool:
        """True after a pass read every type it asked for from a full (no ``_since``) export, resuming none.

        The Patients do not count: the sync weighs only the mapped types'
        resources (``retraction_guard.vanished_counts``) and links patients
        from every link it stored.  So a ``--full`` pass whose Patients came
        from the incremental export, before ``pages`` exported everything,
        is still a complete listing, and the nightly sweep retires what
        vanished even where the server lists no deletions.
        """
        return self._complete_pass

    def patients(self) -> Iterator[SourceLine | BadLine]:
        self._complete_pass = True  # pages() clears it for a type read from changes or resumed
        self._export = self._current_or_new()
        yield from read_resources(self._export.folder, "Patient", self.settings.max_resource_bytes)
        self._mark_read("Patient")

    def pages(
        self,
        resource_type: str,
        *,
        patient_refs: Sequence[str],
        since: dt.datetime | None,
        resume: str | None,
    ) -> Iterator[Page]:
        export = self._export or self._current_or_new()
        if since is None and export.since is not None:
            log.info(
                "a full read was asked for, the pass's export holds changes only: exporting everything",
                extra={"site": self.site, "resource_type": resource_type},
            )
            export = self._export = self._run(since=None)
        if resume is not None or export.since is not None:
            self._complete_pass = False
        export_id = _export_id(export)
        skip = _resume_position(resume, export_id, resource_type)
        wanted = set(patient_refs)
        cap = self.settings.max_resource_bytes
        lines = bulk.lines_for_patients(export.folder, resource_type, wanted, cap)
        resolver = self._medications(export) if resource_type == "MedicationAdministration" else None
        number, page, yielded = 0, [], False
        deleted = self._deleted_in(export, export_id).get(resource_type, [])
        # Ids the deleted files name that the output lists too: deleted and created again, so not deleted.
        # Only those are kept, not every id of the type: an export can hold millions.
        named, listed = {ref.partition("/")[2] for ref in deleted}, set()
        for line in lines:
            number += 1
            if named and isinstance(line, SourceLine) and line.resource["id"] in named:
                listed.add(line.resource["id"])
            if number <= skip:
                continue
            page.append(line)
            if len(page) >= self.page_size:
                yield self._page(page, resolver, _cursor(export_id, resource_type, number), export)
                page, yielded = [], True
        deleted = [ref for ref in deleted if ref.partition("/")[2] not in listed]
        if page or not yielded or deleted:  # the last page; an empty one still carries the watermark
            yield self._page(page, resolver, _cursor(export_id, resource_type, number), export, deleted)
        self._mark_read(resource_type)

    def _deleted_in(self, export: bulk.ExportResult, export_id: str) -> dict[str, list[str]]:
        """The export's deleted files by type, read once per export (not once per type it serves)."""
        if self._deleted is None or self._deleted[0] != export_id:
            found = deleted_by_type(self.site, export.folder, self.settings.max_resource_bytes)
            self._deleted = (export_id, found)
        return self._deleted[1]

    def _medications(self, export: bulk.ExportResult) -> medications.MedicationResolver:
        """Medications the export holds (servers may add referenced ones), the rest asked by id."""
        lookup = bundles.medication_lookup(self.client, strict=True)
        resolver = medications.MedicationResolver(lookup)
        for line in read_resources(export.folder, "Medication", self.settings.max_resource_bytes):
            if isinstance(line, SourceLine):
                resolver.add(line.resource)
        return resolver

    @staticmethod
    def _page(
        lines: list[SourceLine | BadLine],
        resolver: medications.MedicationResolver | None,
        cursor: str,
        export: bulk.ExportResult,
        deleted: list[str] | None = None,
    ) -> Page:
        if resolver is not None:
            resolver.inline([line.resource for line in lines if isinstance(line, SourceLine)])
        return Page(lines, cursor, export.transaction_time, deleted or [])

    def expected_total(self) -> int | None:
        return None  # unknown until the export is done

    # export bookkeeping ------------------------------------------------------

    def _current_or_new(self) -> bulk.ExportResult:
        """The downloaded export a crashed pass left unread, else a new (incremental) export."""
        exporter = self.exporter
        state = exporter.load_state()
        consumed = self._consumed()
        if state is not None and state.finished:
            moment = bundles.parse_instant(state.transaction_time) if state.transaction_time else None
            left = bulk.ExportResult(exporter.folder, moment, state.since, len(state.downloaded), [])
            types = consumed.get("types")
            read_all = isinstance(types, list) and set(types) >= set(bulk.EXPORT_TYPES)
            if consumed.get("export") != _export_id(left) or not read_all:
                log.info("reading the export a previous pass did not finish", extra={"site": self.site})
                return left
        until = consumed.get("until")
        since = None
        if isinstance(until, str) and (moment := bundles.parse_instant(until)) is not None:
            since = history.since_value(moment - OVERLAP)
        return self._run(since)

    def _run(self, since: str | None) -> bulk.ExportResult:
        result = self.exporter.run(since)
        until = self._consumed().get("until")
        self._write_consumed({"export": _export_id(result), "types": [], "until": until})
        return result

    def _mark_read(self, resource_type: str) -> None:
        """Note a type as read; when all are, the export's time becomes the next ``_since``."""
        if self._export is None:
            return
        consumed = self._consumed()
        export_id = _export_id(self._export)
        if consumed.get("export") != export_id:
            consumed = {"export": export_id, "types": [], "until": consumed.get("until")}
        read = consumed.get("types")
        types = sorted({*(read if isinstance(read, list) else []), resource_type})
        consumed["types"] = types
        if set(types) >= set(bulk.EXPORT_TYPES) and self._export.transaction_time is not None:
            consumed["until"] = export_id
        self._write_consumed(consumed)

    def _consumed(self) -> dict[str, object]:
        try:
            data = orjson.loads((self.settings.work_dir / CONSUMED_FILE).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_consumed(self, data: dict[str, object]) -> None:
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        (self.settings.work_dir / CONSUMED_FILE).write_bytes(orjson.dumps(data))


def _export_id(export: bulk.ExportResult) -> str:
    moment = export.transaction_time
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds") if moment else "unknown"


def _cursor(export_id: str, resource_type: str, lines_read: int) -> str:
    return orjson.dumps({"export": export_id, "type": resource_type, "lines": lines_read}).decode()


def _resume_position(resume: str | None, export_id: str, resource_type: str) -> int:
    """Lines of this type already committed from this export, per the saved cursor."""
    if not resume:
        return 0
    try:
        data = orjson.loads(resume)
    except orjson.JSONDecodeError:
        return 0
    if not isinstance(data, dict) or data.get("export") != export_id or data.get("type") != resource_type:
        return 0
    lines = data.get("lines")
    return lines if isinstance(lines, int) and lines > 0 else 0


def deleted_by_type(
    site: str, folder: Path, max_bytes: int = ndjson.MAX_RESOURCE_BYTES
) -> dict[str, list[str]]:
    """``Type/id`` of every resource the export's ``deleted`` files list, by resource type.

    Each line is a Bundle whose entries carry ``request.method`` DELETE and
    ``request.url`` ``Type/id``
    (https://hl7.org/fhir/uv/bulkdata/export.html#response---complete-status).
    Entries of other methods are ignored; a line that is no such Bundle (or
    is over ``max_bytes``) is skipped with a warning: a deletion missed now
    is retired by the next full export, one retired wrongly would retract a
    subject's record.
    """
    found: dict[str, set[str]] = {}
    unreadable = 0
    for path in sorted(folder.glob(f"{bulk.DELETED_PREFIX}.*.ndjson")):
        with path.open("rb") as handle:
            for _number, line, _size in ndjson.bounded_lines(handle, max_bytes):
                if line is not None and not line.strip():
                    continue
                entries = _bundle_entries(line)
                if entries is None:
                    unreadable += 1
                    continue
                for entry in entries:
                    request = entry.get("request") if isinstance(entry, dict) else None
                    if not isinstance(request, dict) or str(request.get("method")).upper() != "DELETE":
                        continue
                    ref = history.reference(request.get("url"))
                    if ref is not None:
                        found.setdefault(ref.partition("/")[0], set()).add(ref)
    if unreadable:
        log.warning(
            "lines of the export's deleted files are not Bundles of deletions; what they list waits for "
            "the next full export",
            extra={"site": site, "lines": unreadable},
        )
    return {resource_type: sorted(refs) for resource_type, refs in found.items()}


def _bundle_entries(line: bytes | None) -> list[Any] | None:
    """The entries of one line's Bundle; None for a line that is none (or was too long to read)."""
    try:
        bundle = orjson.loads(line) if line is not None else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return None
    entries = bundle.get("entry", [])
    return entries if isinstance(entries, list) else None
