"""A Bulk export's ``deleted`` files: downloaded like output files, read as deletions of the wanted types.

https://hl7.org/fhir/uv/bulkdata/export.html (v2): with ``_since``, the
manifest's ``deleted`` lists NDJSON files of Bundles whose entries say
``request.method`` DELETE and ``request.url`` ``Type/id``.  The sync-level
test against sekmet is in ``test_fhir_deletions.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
import responses

from adapter import errors
from adapter.fhir import bulk, bulk_source, http
from adapter.fhir import settings as fhir_settings
from adapter.fhir.source import Page

from fhirtesting import BASE, Sleeps

STATUS = f"{BASE}/bulk-status/1"
FILES = f"{BASE}/bulk-files/1"
SINCE = dt.datetime(2025, 6, 1, 9, 0, tzinfo=dt.UTC)
TYPES = ("Patient", "Observation", "MedicationAdministration", "Procedure")


def lines(*items: dict[str, Any] | str) -> bytes:
    return b"".join((orjson.dumps(i) if isinstance(i, dict) else i.encode()) + b"\n" for i in items)


def obs(identifier: str, patient: str = "a") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": identifier, "subject": {"reference": f"Patient/{patient}"}}


def deletions(*entries: tuple[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": method, "url": url}} for method, url in entries],
    }


def manifest(deleted_files: int = 1) -> dict[str, Any]:
    return {
        "transactionTime": "2025-06-01T10:00:00.000Z",
        "requiresAccessToken": True,
        "output": [{"type": t, "url": f"{FILES}/{t}.ndjson"} for t in TYPES],
        "deleted": [{"type": "Bundle", "url": f"{FILES}/deleted-{n}.ndjson"} for n in range(deleted_files)],
    }


def serve(deleted_files: int = 1) -> None:
    responses.get(f"{BASE}/Group/trial/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, json=manifest(deleted_files))
    responses.delete(STATUS, status=202)
    responses.get(f"{FILES}/Patient.ndjson", body=lines({"resourceType": "Patient", "id": "a"}))
    responses.get(f"{FILES}/Observation.ndjson", body=lines(obs("o1"), obs("back")))
    responses.get(f"{FILES}/MedicationAdministration.ndjson", body=b"")
    responses.get(f"{FILES}/Procedure.ndjson", body=b"")


def make_source(tmp_path: Path, sleeps: Sleeps) -> bulk_source.BulkExportSource:
    settings = fhir_settings.BulkSource(kind="fhir-bulk", base_url=BASE, group_id="trial", work_dir=tmp_path)
    client = http.FhirClient("test-site", BASE, sleep=sleeps)
    return bulk_source.BulkExportSource("test-site", settings, client=client, page_size=1, sleep=sleeps)


def read(source: bulk_source.BulkExportSource, resource_type: str) -> list[Page]:
    list(source.patients())
    return list(source.pages(resource_type, patient_refs=["Patient/a"], since=SINCE, resume=None))


@responses.activate
def test_the_deleted_files_become_the_types_deletions_on_its_last_page(
    tmp_path: Path, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    serve(deleted_files=2)
    responses.get(
        f"{FILES}/deleted-0.ndjson",
        body=lines(
            deletions(("DELETE", "Observation/gone"), ("DELETE", "Procedure/p1"), ("PUT", "Observation/o1")),
            deletions(("DELETE", "Observation/back")),  # and created again: the output lists it
            "not json",
            {"resourceType": "Bundle", "entry": "junk"},
        ),
    )
    responses.get(
        f"{FILES}/deleted-1.ndjson",
        body=lines(deletions(("DELETE", f"{BASE}/Observation/far/_history/2"), ("DELETE", "Observation"))),
    )
    source = make_source(tmp_path, sleeps)
    with caplog.at_level(logging.WARNING, logger="adapter.fhir.bulk_source"):
        pages = read(source, "Observation")
    # A page per resource (page_size 1), then the deletions on an empty last page.
    assert [p.deleted for p in pages] == [[], [], ["Observation/far", "Observation/gone"]]
    assert {p.watermark for p in pages} == {dt.datetime(2025, 6, 1, 10, 0, tzinfo=dt.UTC)}
    assert [r.getMessage() for r in caplog.records].count(
        "lines of the export's deleted files are not Bundles of deletions; what they list waits for the "
        "next full export"
    ) == 1
    assert [p.deleted for p in source.pages("Procedure", patient_refs=[], since=SINCE, resume=None)] == [
        ["Procedure/p1"]
    ]  # no Procedure in the output: one empty page carries them
    assert sorted(p.name for p in (tmp_path / bulk.DOWNLOAD_DIR).glob("deleted.*")) == [
        "deleted.001.ndjson",
        "deleted.002.ndjson",
    ]
    assert all(
        c.request.headers.get("Accept") == "application/fhir+ndjson"
        for c in responses.calls
        if "deleted" in c.request.url
    )


@responses.activate
def test_a_resumed_pass_reports_the_deletions_again(tmp_path: Path, sleeps: Sleeps) -> None:
    serve()
    responses.get(f"{FILES}/deleted-0.ndjson", body=lines(deletions(("DELETE", "Observation/gone"))))
    first = make_source(tmp_path, sleeps)
    list(first.patients())
    pages = first.pages("Observation", patient_refs=["Patient/a"], since=SINCE, resume=None)
    committed = list(pages)  # every page of the type, then the process dies before the type is done
    assert committed[-1].deleted == ["Observation/gone"]

    second = make_source(tmp_path, sleeps)
    list(second.patients())
    again = list(
        second.pages("Observation", patient_refs=["Patient/a"], since=SINCE, resume=committed[-1].cursor)
    )
    assert [(p.lines, p.deleted) for p in again] == [([], ["Observation/gone"])]  # harmless twice
    assert sum("$export" in c.request.url for c in responses.calls) == 1


@responses.activate
def test_a_deleted_file_that_failed_to_download_is_fetched_by_the_next_pass_alone(
    tmp_path: Path, sleeps: Sleeps
) -> None:
    serve()
    responses.get(f"{FILES}/deleted-0.ndjson", status=404, json={"resourceType": "OperationOutcome"})
    client = http.FhirClient("test-site", BASE, sleep=sleeps)
    exporter = bulk.BulkExport(client, tmp_path, group_id="trial", sleep=sleeps)
    with pytest.raises(errors.FatalNetworkError):
        exporter.run(since="2025-06-01T09:00:00Z")
    state = json.loads((tmp_path / bulk.STATE_FILE).read_text())
    assert state["finished"] is False and len(state["downloaded"]) == len(TYPES)

    responses.reset()
    responses.get(STATUS, json=manifest())
    responses.delete(STATUS, status=202)
    responses.get(f"{FILES}/deleted-0.ndjson", body=lines(deletions(("DELETE", "Observation/gone"))))
    result = exporter.run(since="2025-06-01T09:00:00Z")
    assert [c.request.url for c in responses.calls if c.request.method == "GET"] == [
        STATUS,
        f"{FILES}/deleted-0.ndjson",
    ]  # no second kick-off, no output file again
    assert bulk_source.deleted_by_type("test-site", result.folder)["Observation"] == ["Observation/gone"]


@responses.activate
def test_an_export_without_deleted_files_reports_none(tmp_path: Path, sleeps: Sleeps) -> None:
    serve(deleted_files=0)
    pages = read(make_source(tmp_path, sleeps), "Observation")
    assert [p.deleted for p in pages] == [[], []]
