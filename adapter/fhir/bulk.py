"""FHIR Bulk Data export: kick-off, polling, streamed download, clean-up, resume.

https://hl7.org/fhir/uv/bulkdata/export.html.  ``BulkExport`` runs one
export job: a kick-off request (``Prefer: respond-async``) to
``Group/[id]/$export`` (the site's Group of trial patients) or, when no
group is configured, ``Patient/$export``; status polls that honour
``Retry-After`` (capped, like smart-fetch ``bulk_utils.py``, which saw
Cerner ask for five hours) and report ``X-Progress``; a streamed download of
each NDJSON file (constant memory, ``.part`` files renamed when complete);
and a ``DELETE`` of the job when the files are safe on disk.

A configured group never silently widens to ``Patient/$export``: that would
export every patient of the hospital.  If the server cannot export a group,
the error says so, and the site decides (remove ``group_id``).

The status URL is saved in the work folder before the first poll, so an
interrupted export (crash, restart, the wait cap) is picked up by the next
pass instead of starting again; files already downloaded are not fetched
twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from adapter import errors
from adapter.fhir import bundles, http
from adapter.fhir.ndjson import MAX_RESOURCE_BYTES, read_resources
from adapter.fhir.source import BadLine, SourceLine
from adapter.net.messages import outcome_text, read_prefix, redact_url
from adapter.net.retry import parse_retry_after

log = logging.getLogger(__name__)

EXPORT_TYPES = ("Patient", "Observation", "MedicationAdministration", "Procedure")
# Not asked for, but kept when a server adds them: the spec lets a Patient- or
# Group-level export include resources its resources reference, and a
# Medication names the drug of an administration (adapter/fhir/medications.py).
REFERENCED_TYPES = ("Medication",)
STATE_FILE = "export-state.json"
DELETED_PREFIX = "deleted"  # deleted.001.ndjson: no resource type, so never read as resources
DOWNLOAD_DIR = "download"
CHUNK_BYTES = 1 << 16
ERROR_FILE_BYTES = 1 << 20  # of an export's error file, only the start is read


@dataclass
class ExportState:
    """What survives a crash: the job at the server and how far the download got."""

    kickoff_url: str
    status_url: str
    since: str | None
    transaction_time: str | None = None
    downloaded: list[str] = field(default_factory=list)  # file names complete on disk
    finished: bool = False  # every file is on disk and the job was deleted at the server


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    transaction_time: dt.datetime | None
    since: str | None
    files: int
    messages: list[str]


class BulkExport:
    """One ``$export`` job at one site, from kick-off to ``DELETE``."""

    def __init__(
        self,
        client: http.FhirClient,
        work_dir: Path,
        *,
        group_id: str | None = None,
        types: Sequence[str] = EXPORT_TYPES,
        poll_cap: float = 300.0,
        max_wait: float = 24 * 3600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.work_dir = work_dir
        self.group_id = group_id
        self.types = tuple(types)
        self.poll_cap = poll_cap
        self.max_wait = max_wait
        self.sleep = sleep

    @property
    def state_path(self) -> Path:
        return self.work_dir / STATE_FILE

    @property
    def folder(self) -> Path:
        return self.work_dir / DOWNLOAD_DIR

    def kickoff_url(self, since: str | None) -> str:
        """``Group/[id]/$export`` or ``Patient/$export`` with ``_type`` and ``_since``."""
        path = f"Group/{self.group_id}/$export" if self.group_id else "Patient/$export"
        params = {"_type": ",".join(self.types)}
        if since:
            params["_since"] = since
        return f"{self.client.url(path)}?{urllib.parse.urlencode(params)}"

    def run(self, since: str | None) -> ExportResult:
        """Export (or resume the saved export), download every file, delete the job."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        state = self.load_state()
        if state is not None and state.finished:
            state = None  # a finished export stays on disk until the next one begins
        if state is None:
            state = self._kick_off(since)
        else:
            log.info("resuming the saved bulk export", extra={"site": self.client.site})
        try:
            manifest = self._poll(state)
        except errors.FatalNetworkError as exc:
            if exc.status not in (404, 410):
                raise
            # The server forgot the job (expired, restarted): start a fresh one, once.
            log.warning(
                "the server no longer knows the saved export; starting a new one",
                extra={"site": self.client.site},
            )
            state = self._kick_off(state.since)
            manifest = self._poll(state)
        state.transaction_time = (
            manifest.get("transactionTime") if isinstance(manifest.get("transactionTime"), str) else None
        )
        self.save_state(state)
        files = self._download(state, manifest)
        messages = self._messages(manifest)
        self._delete(state.status_url)
        state.finished = True
        self.save_state(state)
        moment = bundles.parse_instant(state.transaction_time) if state.transaction_time else None
        return ExportResult(self.folder, moment, state.since, files, messages)

    # ------------------------------------------------------------ steps

    def _kick_off(self, since: str | None) -> ExportState:
        url = self.kickoff_url(since)
        response = self.client.request(
            "GET",
            url,
            headers={"Accept": "application/fhir+json", "Prefer": "respond-async"},
            accept=(202,),
        )
        location = response.headers.get("Content-Location")
        response.close()
        if not location:
            raise errors.SourceError(
                f"site {self.client.site}: the export kick-off {redact_url(url)} answered 202 "
                "without a Content-Location header, so there is no status to poll"
            )
        if self.folder.exists():
            shutil.rmtree(self.folder)
        state = ExportState(kickoff_url=url, status_url=urllib.parse.urljoin(url, location), since=since)
        self.save_state(state)
        log.info("bulk export started", extra={"site": self.client.site, "since": since})
        return state

    def _poll(self, state: ExportState) -> dict[str, Any]:
        """Poll the status URL until the manifest is ready, within ``max_wait`` in total."""
        waited, polls = 0.0, 0
        while True:
            response = self.client.request(
                "GET", state.status_url, headers={"Accept": "application/json"}, accept=(200, 202)
            )
            polls += 1
            if response.status_code == 200:
                try:
                    manifest = orjson.loads(response.content)
                except orjson.JSONDecodeError:
                    manifest = None
                if not isinstance(manifest, dict) or not isinstance(manifest.get("output", []), list):
                    raise errors.SourceError(
                        f"site {self.client.site}: the export's manifest is not a JSON object with an "
                        "output list"
                    )
                return manifest
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            progress = response.headers.get("X-Progress", "")[:100]
            response.close()
            delay = min(retry_after if retry_after is not None else min(2.0**polls, 60.0), self.poll_cap)
            if waited + delay > self.max_wait:
                raise errors.TemporaryNetworkError(
                    f"site {self.client.site}: the bulk export is still running after {waited / 3600:.1f} h "
                    f"({progress or 'no progress reported'}); the next pass resumes waiting for the same job"
                )
            log.info(
                "bulk export in progress",
                extra={"site": self.client.site, "progress": progress, "delay_seconds": delay},
            )
            self.sleep(delay)
            waited += delay

    def _download(self, state: ExportState, manifest: dict[str, Any]) -> int:
        """Stream the wanted types' output files and the deleted files to disk, skipping those on disk."""
        self.folder.mkdir(parents=True, exist_ok=True)
        authenticate = manifest.get("requiresAccessToken") is not False
        counts: dict[str, int] = {}
        files = 0
        for item in manifest.get("output", []):
            kind = item.get("type") if isinstance(item, dict) else None
            url = item.get("url") if isinstance(item, dict) else None
            if kind not in (*self.types, *REFERENCED_TYPES) or not isinstance(url, str):
                continue
            counts[kind] = counts.get(kind, 0) + 1
            files += 1
            self._download_once(state, url, f"{kind}.{counts[kind]:03d}.ndjson", authenticate)
        # Bulk Data v2: what was deleted since _since, as Bundles of DELETEs (bulk_source.deleted_by_type).
        deleted = manifest.get("deleted")
        for number, item in enumerate(deleted if isinstance(deleted, list) else [], start=1):
            url = item.get("url") if isinstance(item, dict) else None
            if isinstance(url, str):
                self._download_once(state, url, f"{DELETED_PREFIX}.{number:03d}.ndjson", authenticate)
        return files

    def _download_once(self, state: ExportState, url: str, name: str, authenticate: bool) -> None:
        """One file of the export to disk, unless an earlier try already put it there; noted in the state."""
        if name in state.downloaded and (self.folder / name).exists():
            return
        self._stream(url, self.folder / name, authenticate)
        state.downloaded.append(name)
        self.save_state(state)

    def _stream(self, url: str, target: Path, authenticate: bool) -> None:
        part = target.with_name(target.name + ".part")
        response = self.client.request(
            "GET", url, headers={"Accept": "application/fhir+ndjson"}, stream=True, authenticate=authenticate
        )
        try:
            with part.open("wb") as handle:
                for chunk in response.iter_content(chunk_size=CHUNK_BYTES):
                    handle.write(chunk)
        except OSError as exc:
            raise errors.SourceError(
                f"site {self.client.site}: could not write {part} ({exc.strerror or exc})"
            ) from None
        except Exception as exc:
            # requests' ChunkedEncodingError and friends: the connection broke mid-file.
            raise errors.TemporaryNetworkError(
                f"site {self.client.site}: the download of {redact_url(url)} broke off "
                f"({exc.__class__.__name__}); the next pass downloads this file again"
            ) from None
        finally:
            response.close()
        os.replace(part, target)

    def _messages(self, manifest: dict[str, Any]) -> list[str]:
        """The server's OperationOutcome messages from the ``error`` files, in plain words."""
        messages = []
        for item in manifest.get("error", []) or []:
            url = item.get("url") if isinstance(item, dict) else None
            if not isinstance(url, str):
                continue
            try:
                response = self.client.request(
                    "GET", url, headers={"Accept": "application/fhir+ndjson"}, stream=True
                )
            except errors.NetworkError as exc:
                messages.append(f"(could not read an error file: {exc})")
                continue
            try:
                head = read_prefix(response, ERROR_FILE_BYTES)  # the first messages say enough
            finally:
                response.close()
            for line in head.splitlines()[:20]:
                try:
                    text = outcome_text(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
                if text:
                    messages.append(text)
        for message in messages:
            log.warning("bulk export message", extra={"site": self.client.site, "said": message[:300]})
        return messages

    def _delete(self, status_url: str) -> None:
        """Tell the server it may drop the files (some servers allow one export per client at a time)."""
        try:
            self.client.request("DELETE", status_url, accept=(200, 202, 204, 404))
        except errors.NetworkError as exc:
            log.warning(
                "could not delete the finished export job",
                extra={"site": self.client.site, "error": str(exc)},
            )

    # ------------------------------------------------------------ state

    def load_state(self) -> ExportState | None:
        try:
            data = orjson.loads(self.state_path.read_bytes())
            return ExportState(**data)
        except (OSError, orjson.JSONDecodeError, TypeError):
            return None

    def save_state(self, state: ExportState) -> None:
        temp = self.state_path.with_suffix(".tmp")
        temp.write_bytes(orjson.dumps(asdict(state), option=orjson.OPT_INDENT_2))
        os.replace(temp, self.state_path)


def subject_ref(resource: dict[str, Any]) -> str | None:
    """``Patient/<id>`` of a resource's subject (or the Patient itself)."""
    if resource.get("resourceType") == "Patient":
        return f"Patient/{resource.get('id')}"
    for name in ("subject", "patient"):
        value = resource.get(name)
        reference = value.get("reference") if isinstance(value, dict) else None
        if isinstance(reference, str):
            return "/".join(reference.split("/_history/")[0].rstrip("/").split("/")[-2:])
    return None


def lines_for_patients(
    folder: Path, resource_type: str, patient_refs: set[str], max_bytes: int = MAX_RESOURCE_BYTES
) -> Iterator[SourceLine | BadLine]:
    """The folder's resources of one type that belong to these patients (others never enter the store).

    Lines longer than ``max_bytes`` are never read whole (``ndjson.read_resources``).
    """
    for line in read_resources(folder, resource_type, max_bytes):
        if isinstance(line, BadLine) or subject_ref(line.resource) in patient_refs:
            yield line
