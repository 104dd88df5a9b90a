"""The REST source end to end against a real FHIR server (sekmet on 127.0.0.1).

The demo sites are loaded into the server; a sync through the search API
must deliver exactly what the NDJSON folder source delivers, page and batch
sizes notwithstanding, and incremental passes, updates, deletes and a crash
mid-pass must behave as docs/design.md §2 says.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import prometheus_client
import pytest
import requests
import sqlalchemy as sa

from adapter import config as config_mod
from adapter import paths, sync
from adapter.delivery import outbox
from adapter.fhir import rest, search_terms
from adapter.fhir.source import Page
from adapter.service import job
from adapter.sinks import factory as sinks
from adapter.store import db, models
from adapter.sync import ingest, retraction_guard

from fhirserver import FhirServer, FhirServerFactory
from fhirtesting import server_config, site_source
from golden import repository_records

Records = dict[str, dict[str, list[dict[str, Any]]]]


def requests_made(site: str) -> float:
    """Responses counted by the adapter's metric for a site, over all statuses."""
    total = 0.0
    for metric in prometheus_client.REGISTRY.collect():
        if metric.name == "trial_adapter_http_responses":
            total += sum(
                s.value for s in metric.samples if s.name.endswith("_total") and s.labels["site"] == site
            )
    return total


def setup_and_store(config: config_mod.Config) -> tuple[sync.SiteSetup, Any]:
    return sync.SiteSetup.load(config, config.sites[0]), db.open_store(config.store.url)


def outbox_size(config: config_mod.Config) -> int:
    with db.open_store(config.store.url)() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(models.OutboxItem)) or 0)


def cursor_row(config: config_mod.Config, resource_type: str) -> models.SyncCursor:
    with db.open_store(config.store.url)() as session:
        row = session.get(models.SyncCursor, (config.sites[0].id, resource_type))
        assert row is not None
        session.expunge(row)
        return row


@pytest.mark.parametrize("site", ["demo-north", "demo-east"])
def test_full_sync_from_the_server_equals_the_ndjson_folder(
    demo_server: FhirServer, ndjson_records: Records, tmp_path: Path, site: str
) -> None:
    config = server_config(tmp_path, demo_server.base_url, (site,), page_size=25, patient_batch_size=3)
    before = requests_made(site)
    result = job.run_once(config, config.sites)
    summary = result.syncs[0]
    assert repository_records(config) == ndjson_records[site]
    # 4 roster patients in batches of 3: 2 identifier searches, and per type 2 searches, each
    # followed over several pages of 25 for the Observations and administrations.
    assert requests_made(site) - before > 2 + 3 * 2
    assert summary.resources_read > 500 and summary.invalid == 0


def test_small_pages_give_the_same_resources_as_one_big_page(demo_server: FhirServer, tmp_path: Path) -> None:
    def ids(page_size: int) -> list[str]:
        config = server_config(
            tmp_path / str(page_size), demo_server.base_url, ("demo-east",), page_size=page_size
        )
        source = site_source(config)
        pages = list(source.pages("Observation", patient_refs=patient_refs(source), since=None, resume=None))
        return [line.resource["id"] for page in pages for line in page.lines if hasattr(line, "resource")]

    small, big = ids(7), ids(1000)
    assert len(small) == len(big) > 100 and sorted(small) == sorted(big)
    assert len(set(small)) == len(small)


def patient_refs(source: Any) -> list[str]:
    return sorted(f"Patient/{line.resource['id']}" for line in source.patients())


def test_incremental_pass_without_changes_asks_once_per_type_and_batch_and_writes_nothing(
    demo_server: FhirServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Searches only: the history requests of deletions_from_history are counted in test_fhir_deletions.py.
    config = server_config(
        tmp_path,
        demo_server.base_url,
        ("demo-north",),
        page_size=1000,
        patient_batch_size=2,
        deletions_from_history=False,
    )
    setup, sessions = setup_and_store(config)
    sync.sync_site(setup, sessions)
    watermark = cursor_row(config, "Observation").watermark
    queued = outbox_size(config)

    before = requests_made("demo-north")
    again = sync.sync_site(setup, sessions)  # the default 5-minute overlap brings everything back
    # 2 identifier searches + 3 types x 2 patient batches; every answer fits one page.
    assert requests_made("demo-north") - before == 2 + 3 * 2
    assert again.unchanged > 500 and again.resources_mapped == again.facts_written == 0
    assert again.upserts == again.retractions == 0 and outbox_size(config) == queued

    monkeypatch.setattr(ingest, "OVERLAP", dt.timedelta(0))
    before = requests_made("demo-north")
    quiet = sync.sync_site(setup, sessions)
    assert requests_made("demo-north") - before == 2 + 3 * 2
    assert quiet.resources_read == 4  # the roster patients; no resource changed after the watermark
    assert quiet.unchanged == quiet.resources_mapped == quiet.upserts == 0
    assert cursor_row(config, "Observation").watermark >= watermark


def test_packed_batches_ask_fewer_requests_for_the_same_records(
    demo_server: FhirServer, tmp_path: Path
) -> None:
    def run(name: str, **source: Any) -> tuple[Records, Any]:
        config = server_config(tmp_path / name, demo_server.base_url, ("demo-north",), **source)
        before = requests_made("demo-north")
        summary = job.run_once(config, config.sites).syncs[0]
        assert summary.ehr_requests == requests_made("demo-north") - before  # the summary counts them all
        return repository_records(config), summary

    # Pages of 1000 hold every answer, so requests are searches.
    one_by_one, single = run("single", patient_batch_size=1, page_size=1000)
    packed_records, packed = run("packed", page_size=1000)  # as many patients as fit max_url_bytes
    assert packed_records == one_by_one
    assert packed.resources_read == single.resources_read
    # 4 roster patients: 4 identifier searches and 3 x 4 type searches, against 1 + 3.
    assert (single.ehr_requests, packed.ehr_requests) == (4 + 3 * 4, 1 + 3)


def test_updates_arrive_incrementally_and_a_full_sweep_retires_deletes(
    fhir_server_factory: FhirServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fhir_server_factory()
    server.load_ndjson(paths.demo_data_dir() / "demo-north")
    # Without the type's history (deletions_from_history = false; test_fhir_deletions.py has it on).
    config = server_config(tmp_path, server.base_url, ("demo-north",), deletions_from_history=False)
    setup, sessions = setup_and_store(config)
    job.run_once(config, config.sites)
    first = repository_records(config)

    creatinine = server.read("Observation", "obs-5c55fe2d8419")
    creatinine["valueQuantity"]["value"] = 2.4  # above the 1.6 mg/dL limit
    server.update(creatinine)
    server.delete("Procedure", "prc-81347760c93d")  # N-001's transplant

    monkeypatch.setattr(ingest, "OVERLAP", dt.timedelta(0))  # only what changed since the first pass
    incremental = sync.sync_site(setup, sessions)
    assert incremental.resources_mapped == 1 and incremental.unchanged == 0  # the update, once
    assert incremental.upserts >= 1 and incremental.vanished == 0
    # An incremental search cannot see a deletion; the periodic full sweep does, and retracts
    # what the deleted procedure fed.
    sweep = sync.sync_site(setup, sessions, full=True)
    assert sweep.vanished == 1 and sweep.retractions >= 1
    outbox.drain(sessions, sinks.make_sink(config.repository))
    after = repository_records(config)
    assert after["EligibilityAssessment.ndjson"] != first["EligibilityAssessment.ndjson"]
    assert len(after["Transplant.ndjson"]) == len(first["Transplant.ndjson"]) - 1  # retracted: removed


class CrashAfter:
    """The real source, failing after ``pages`` committed pages of one type (a crash mid-pass)."""

    def __init__(self, inner: Any, resource_type: str, pages: int) -> None:
        self.inner, self.resource_type, self.left = inner, resource_type, pages

    @property
    def complete_listing(self) -> bool:
        return bool(self.inner.complete_listing)

    def patients(self) -> Iterator[Any]:
        return self.inner.patients()  # type: ignore[no-any-return]

    def pages(self, resource_type: str, **kwargs: Any) -> Iterator[Page]:
        for page in self.inner.pages(resource_type, **kwargs):
            if resource_type == self.resource_type:
                if self.left == 0:
                    raise requests.ConnectionError("the adapter's host lost power")
                self.left -= 1
            yield page

    def expected_total(self) -> int | None:
        return None


def test_resume_after_a_crash_mid_pass(
    demo_server: FhirServer, ndjson_records: Records, tmp_path: Path
) -> None:
    # One commit per page of 20: the crash after the third page leaves three committed.
    config = server_config(
        tmp_path, demo_server.base_url, ("demo-east",), page_size=20, resources_per_commit=1
    )
    setup, sessions = setup_and_store(config)
    with pytest.raises(requests.ConnectionError):
        crashing = CrashAfter(site_source(config), "Observation", pages=3)
        sync.sync_site(setup, sessions, source=crashing)
    saved = cursor_row(config, "Observation")
    cursor = search_terms.PassCursor.load(saved.resume or "")
    assert cursor is not None and cursor.next_url is not None and saved.watermark is None

    # The next pass (a new process after the crash: a new source) picks up at the first
    # uncommitted page, and keeps the interrupted pass's start as the watermark.
    urls: list[str] = []
    source = site_source(config)
    assert isinstance(source, rest.RestSearchSource)
    source.client.session.hooks["response"].append(lambda r, *a, **k: urls.append(r.url))
    sync.sync_site(setup, sessions, source=source)
    observation_urls = [u for u in urls if "/Observation" in u]
    assert observation_urls[0] == cursor.next_url
    assert cursor_row(config, "Observation").resume is None
    watermark = cursor_row(config, "Observation").watermark
    assert watermark is not None and cursor.started is not None
    assert watermark == dt.datetime.fromisoformat(cursor.started)
    job.run_once(config, config.sites)
    assert repository_records(config) == ndjson_records["demo-east"]


def test_patient_batches_never_search_by_name(demo_server: FhirServer, tmp_path: Path) -> None:
    config = server_config(tmp_path, demo_server.base_url, ("demo-north",), patient_batch_size=1)
    source = site_source(config)
    assert isinstance(source, rest.RestSearchSource)
    urls: list[str] = []
    source.client.session.hooks["response"].append(lambda r, *a, **k: urls.append(r.url))
    refs = patient_refs(source)
    list(source.pages("Procedure", patient_refs=refs, since=None, resume=None))
    queries = [dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(u).query)) for u in urls]
    assert [q["identifier"].count(",") for q in queries[:4]] == [0, 0, 0, 0]  # one patient per search
    assert all("name" not in q and "family" not in q for q in queries)
    assert [q["patient"] for q in queries[4:]] == [ref.split("/")[1] for ref in refs]
    assert len(refs) == 4  # the non-roster patient in the server is never asked for


def test_a_full_pass_whose_searches_suddenly_find_nothing_retracts_nothing(
    fhir_server_factory: FhirServerFactory, tmp_path: Path
) -> None:
    """An EHR that answers a type's searches with nothing looks like a mass deletion; it is held back."""
    server = fhir_server_factory()
    server.load_ndjson(paths.demo_data_dir() / "demo-north")
    config = server_config(tmp_path, server.base_url, ("demo-north",))
    setup, sessions = setup_and_store(config)
    job.run_once(config, config.sites)
    first = repository_records(config)
    export = paths.demo_data_dir() / "demo-north" / "MedicationAdministration.ndjson"
    administrations = export.read_text(encoding="utf-8").splitlines()
    assert len(administrations) >= 2 and first["TreatmentCycle.ndjson"]
    for line in administrations:
        server.delete("MedicationAdministration", orjson.loads(line)["id"])

    sweep = sync.sync_site(setup, sessions, full=True)
    held = sweep.held.get("MedicationAdministration", 0)
    assert set(sweep.held) == {"MedicationAdministration"} and held >= 2 and sweep.vanished == 0
    outbox.drain(sessions, sinks.make_sink(config.repository))
    assert repository_records(config)["TreatmentCycle.ndjson"] == first["TreatmentCycle.ndjson"]

    retraction_guard.accept(sessions, "demo-north", "MedicationAdministration", "really gone", actor="test")
    accepted = sync.sync_site(setup, sessions, full=True)
    assert accepted.held == {} and accepted.vanished == held and accepted.retractions >= 1
    outbox.drain(sessions, sinks.make_sink(config.repository))
    assert repository_records(config).get("TreatmentCycle.ndjson", []) == []
