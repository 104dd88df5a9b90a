"""Bulk Data export: kick-off, several polls, streamed files, DELETE, resume; and a sync from a real server.

https://hl7.org/fhir/uv/bulkdata/export.html.  The mocked cases cover what a
server does slowly or rarely (long Retry-After, a forgotten job, a crash
between poll and download); the last test exports the demo site from sekmet
and syncs it.
"""

from __future__ import annotations

import csv
import json
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
import pytest
import responses

from adapter import errors, paths
from adapter.fhir import bulk, http
from adapter.service import job

from fhirserver import FhirServer
from fhirtesting import BASE, Sleeps, server_config
from golden import repository_records

STATUS = f"{BASE}/bulk-status/job-1"
FILES = "https://files.example.org/export"


def observation(identifier: str, patient: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": identifier, "subject": {"reference": f"Patient/{patient}"}}


def ndjson(*resources: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in resources)


def manifest(requires_token: bool = True) -> dict[str, Any]:
    return {
        "transactionTime": "2025-06-01T10:00:00.000Z",
        "request": f"{BASE}/Group/trial/$export",
        "requiresAccessToken": requires_token,
        "output": [
            {"type": "Patient", "url": f"{FILES}/p1.ndjson"},
            {"type": "Observation", "url": f"{FILES}/o1.ndjson"},
            {"type": "Observation", "url": f"{FILES}/o2.ndjson"},
            {"type": "Encounter", "url": f"{FILES}/e1.ndjson"},
        ],
        "error": [],
    }


def serve_files() -> None:
    responses.get(f"{FILES}/p1.ndjson", body=ndjson({"resourceType": "Patient", "id": "a"}))
    responses.get(f"{FILES}/o1.ndjson", body=ndjson(observation("o1", "a"), observation("o2", "zz")))
    responses.get(f"{FILES}/o2.ndjson", body=ndjson(observation("o3", "a")))


class Bearer:
    def headers(self, client: http.FhirClient) -> dict[str, str]:
        return {"Authorization": "Bearer secret"}

    def refresh(self, client: http.FhirClient) -> bool:
        return False


def exporter(tmp_path: Path, sleeps: Sleeps, group: str | None = "trial", **kwargs: Any) -> bulk.BulkExport:
    client = http.FhirClient("test-site", BASE, auth=Bearer(), sleep=sleeps)
    return bulk.BulkExport(client, tmp_path / "work", group_id=group, poll_cap=10, sleep=sleeps, **kwargs)


@responses.activate
def test_an_export_that_needs_several_polls(tmp_path: Path, sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/Group/trial/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, status=202, headers={"Retry-After": "3", "X-Progress": "collecting"})
    responses.get(STATUS, status=202, headers={"Retry-After": "3600", "X-Progress": "50% done"})
    responses.get(STATUS, status=202, headers={"X-Progress": "writing"})
    responses.get(STATUS, json=manifest())
    responses.delete(STATUS, status=202)
    serve_files()
    result = exporter(tmp_path, sleeps).run(since="2025-05-01T00:00:00Z")

    kickoff = responses.calls[0].request
    assert kickoff.headers["Prefer"] == "respond-async"
    assert dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(kickoff.url).query)) == {
        "_type": "Patient,Observation,MedicationAdministration,Procedure",
        "_since": "2025-05-01T00:00:00Z",
    }
    assert sleeps == [3, 10, 8]  # Retry-After honoured, capped at poll_cap; then our own backoff
    assert sorted(p.name for p in result.folder.iterdir()) == [
        "Observation.001.ndjson",
        "Observation.002.ndjson",
        "Patient.001.ndjson",
    ]  # Encounter was not asked for and is not downloaded
    assert not list(result.folder.glob("*.part"))
    assert responses.calls[-1].request.method == "DELETE"
    assert all(c.request.headers.get("Authorization") == "Bearer secret" for c in responses.calls)
    assert result.transaction_time is not None and result.transaction_time.isoformat().startswith(
        "2025-06-01T10"
    )


@responses.activate
def test_files_that_need_no_token_get_none(tmp_path: Path, sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/Patient/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, json=manifest(requires_token=False))
    responses.delete(STATUS, status=202)
    serve_files()
    exporter(tmp_path, sleeps, group=None).run(since=None)
    downloads = [c.request for c in responses.calls if c.request.url.startswith(FILES)]
    assert downloads and all("Authorization" not in r.headers for r in downloads)
    assert "_since" not in responses.calls[0].request.url


@responses.activate
def test_an_interrupted_export_resumes_from_the_saved_status_url(tmp_path: Path, sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/Group/trial/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, status=202, headers={"Retry-After": "60"})
    with pytest.raises(errors.TemporaryNetworkError, match="still running"):
        exporter(tmp_path, sleeps, max_wait=30).run(since=None)
    saved = json.loads((tmp_path / "work" / bulk.STATE_FILE).read_text())
    assert saved["status_url"] == STATUS and saved["finished"] is False

    responses.reset()
    responses.get(STATUS, json=manifest())
    responses.delete(STATUS, status=202)
    serve_files()
    exporter(tmp_path, sleeps).run(since=None)
    assert not any("$export" in c.request.url for c in responses.calls)  # no second kick-off


@responses.activate
def test_a_forgotten_job_is_started_again(tmp_path: Path, sleeps: Sleeps) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / bulk.STATE_FILE).write_text(json.dumps({"kickoff_url": "x", "status_url": STATUS, "since": None}))
    responses.get(STATUS, status=404, json={"resourceType": "OperationOutcome", "issue": []})
    responses.get(f"{BASE}/Group/trial/$export", status=202, headers={"Content-Location": f"{STATUS}-2"})
    responses.get(f"{STATUS}-2", json=manifest())
    responses.delete(f"{STATUS}-2", status=202)
    serve_files()
    result = exporter(tmp_path, sleeps).run(since=None)
    assert result.files == 3


@responses.activate
def test_kickoff_without_content_location_is_explained(tmp_path: Path, sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/Group/trial/$export", status=202)
    with pytest.raises(errors.SourceError, match="Content-Location"):
        exporter(tmp_path, sleeps).run(since=None)


@responses.activate
def test_a_group_the_server_cannot_export_is_not_widened_to_all_patients(
    tmp_path: Path, sleeps: Sleeps
) -> None:
    responses.get(
        f"{BASE}/Group/trial/$export", status=404, json={"resourceType": "OperationOutcome", "issue": []}
    )
    with pytest.raises(errors.FatalNetworkError, match="group_id"):
        exporter(tmp_path, sleeps).run(since=None)
    assert not any("Patient/$export" in c.request.url for c in responses.calls)


def roster_patient_ids(site: str) -> list[str]:
    folder = paths.demo_data_dir() / site
    with (folder / "roster.csv").open() as handle:
        wanted = {(row["identifier_system"], row["identifier_value"]) for row in csv.DictReader(handle)}
    ids = []
    for line in (folder / "Patient.ndjson").read_text().splitlines():
        patient = json.loads(line)
        if any((i.get("system"), i.get("value")) in wanted for i in patient.get("identifier", [])):
            ids.append(patient["id"])
    return ids


def test_bulk_sync_from_the_server_equals_the_ndjson_folder(
    demo_server: FhirServer, ndjson_records: dict[str, Any], tmp_path: Path
) -> None:
    members = [{"entity": {"reference": f"Patient/{i}"}} for i in roster_patient_ids("demo-north")]
    demo_server.put_resources(
        [{"resourceType": "Group", "id": "trial-north", "type": "person", "actual": True, "member": members}]
    )
    config = server_config(
        tmp_path,
        demo_server.base_url,
        ("demo-north",),
        kind="fhir-bulk",
        group_id="trial-north",
        work_dir="bulk",
    )
    first = job.run_once(config, config.sites).syncs[0]
    assert repository_records(config) == ndjson_records["demo-north"]
    assert first.invalid == 0
    state = json.loads((tmp_path / "bulk" / bulk.STATE_FILE).read_text())
    assert state["finished"] is True and state["since"] is None

    again = job.run_once(config, config.sites).syncs[0]  # an incremental export: _since is set
    state = json.loads((tmp_path / "bulk" / bulk.STATE_FILE).read_text())
    assert state["since"] is not None and "_since=" in state["kickoff_url"]
    assert again.resources_mapped == 0 and again.upserts == 0
