"""Deletions between sweeps against a real FHIR server (sekmet): a type's ``_history`` in an incremental pass.

sekmet declares ``history-type`` for every type and answers
``[type]/_history?_since=`` with its stored versions, deletions as entries
with ``request.method`` DELETE; its next links drop ``_since``, which the
adapter puts back.  What sekmet cannot be made to do (a statement without
``history-type``, a broken history page) is mocked over the real server
with ``responses``, everything else passing through to it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import responses
import sqlalchemy as sa

from adapter import config as config_mod
from adapter import paths, sync
from adapter.delivery import outbox
from adapter.fhir import bulk, rest
from adapter.service import job
from adapter.sinks import factory as sinks
from adapter.store import db, models
from adapter.sync import ingest, retraction_guard

from fhirserver import FhirServer, FhirServerFactory
from fhirtesting import server_config, site_source
from golden import repository_records

CREATININE = "obs-5c55fe2d8419"  # N-001's screening creatinine: it feeds their EligibilityAssessment
TRANSPLANT = "prc-81347760c93d"  # N-001's transplant


def north_server(fhir_server_factory: FhirServerFactory) -> FhirServer:
    server = fhir_server_factory()
    server.load_ndjson(paths.demo_data_dir() / "demo-north")
    return server


def synced(server: FhirServer, tmp_path: Path, **source: Any) -> tuple[config_mod.Config, Any, Any]:
    """demo-north read from the server and delivered once; (config, setup, sessions)."""
    config = server_config(tmp_path, server.base_url, ("demo-north",), **source)
    job.run_once(config, config.sites)
    return config, sync.SiteSetup.load(config, config.sites[0]), db.open_store(config.store.url)


def recorded_source(config: config_mod.Config) -> tuple[rest.RestSearchSource, list[str]]:
    """The site's source, with every URL it asks the server for recorded."""
    source = site_source(config)
    assert isinstance(source, rest.RestSearchSource)
    urls: list[str] = []
    source.client.session.hooks["response"].append(lambda r, *a, **k: urls.append(r.url))
    return source, urls


def stored(config: config_mod.Config, resource_type: str, resource_id: str) -> tuple[str, int]:
    """(outcome, facts) of one stored source resource."""
    with db.open_store(config.store.url)() as session:
        row = session.get(models.SourceResource, ("demo-north", resource_type, resource_id))
        assert row is not None
        facts = session.scalar(
            sa.select(sa.func.count())
            .select_from(models.FactRow)
            .where(models.FactRow.source_ref == f"{resource_type}/{resource_id}")
        )
        return row.outcome, int(facts or 0)


def delivered(config: config_mod.Config, sessions: Any) -> dict[str, list[dict[str, Any]]]:
    outbox.drain(sessions, sinks.make_sink(config.repository))
    return repository_records(config)


def params(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def test_a_deletion_at_the_server_is_retracted_by_the_next_incremental_pass(
    fhir_server_factory: FhirServerFactory, tmp_path: Path
) -> None:
    server = north_server(fhir_server_factory)
    config, setup, sessions = synced(server, tmp_path, page_size=50)
    first = repository_records(config)
    assert stored(config, "Observation", CREATININE)[1] > 0
    server.delete("Observation", CREATININE)

    source, urls = recorded_source(config)
    summary = sync.sync_site(setup, sessions, source=source)
    # An incremental pass: every search asked for _lastUpdated, and nothing was a complete listing.
    searches = [u for u in urls if "/Observation?" in u]
    assert searches and all("_lastUpdated" in params(u) for u in searches)
    assert source.complete_listing is False
    # The type's history since the same moment (the watermark minus the overlap), over several pages
    # of 50 (the overlap brings back the whole load), each asking _since (sekmet's next links lose it).
    history = [u for u in urls if "/Observation/_history" in u]
    assert len(history) > 1 and all("_since" in params(u) for u in history)
    assert params(history[0])["_since"] == params(searches[0])["_lastUpdated"].removeprefix("gt")
    assert sum("/metadata" in u for u in urls) == 1  # the statement once per pass, not per type
    assert summary.ehr_requests == len(urls)  # history and statement requests are counted

    assert summary.vanished == 1 and summary.held == {}
    assert stored(config, "Observation", CREATININE) == ("deleted", 0)
    after = delivered(config, sessions)
    assert after["EligibilityAssessment.ndjson"] != first["EligibilityAssessment.ndjson"]

    again = sync.sync_site(setup, sessions)  # the overlap reads the same deletion again: harmless
    assert again.vanished == 0 and again.upserts == again.retractions == 0
    assert delivered(config, sessions) == after


def test_a_resource_deleted_and_created_again_is_not_retired(
    fhir_server_factory: FhirServerFactory, tmp_path: Path
) -> None:
    server = north_server(fhir_server_factory)
    config, setup, sessions = synced(server, tmp_path)
    first = repository_records(config)
    transplant = server.read("Procedure", TRANSPLANT)
    server.delete("Procedure", TRANSPLANT)
    server.update(transplant)  # its newest history entry is the new version, not the deletion

    summary = sync.sync_site(setup, sessions)
    assert summary.vanished == 0
    outcome, facts = stored(config, "Procedure", TRANSPLANT)
    assert outcome != "deleted" and facts > 0
    assert delivered(config, sessions) == first


def test_the_transplant_deleted_at_the_server_leaves_the_repository_in_the_same_pass(
    fhir_server_factory: FhirServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = north_server(fhir_server_factory)
    config, setup, sessions = synced(server, tmp_path)
    first = repository_records(config)
    server.delete("Procedure", TRANSPLANT)
    monkeypatch.setattr(ingest, "OVERLAP", dt.timedelta(0))  # only what changed since the first pass

    summary = sync.sync_site(setup, sessions)
    assert summary.vanished == 1 and summary.retractions >= 1
    after = delivered(config, sessions)
    assert len(after["Transplant.ndjson"]) == len(first["Transplant.ndjson"]) - 1
    sweep = sync.sync_site(setup, sessions, full=True)  # the nightly sweep finds nothing left to do
    assert sweep.vanished == 0 and sweep.retractions == 0


def test_an_unchanged_site_costs_one_statement_and_one_history_request_per_type(
    fhir_server_factory: FhirServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = north_server(fhir_server_factory)
    config, setup, sessions = synced(server, tmp_path, page_size=1000, patient_batch_size=2)
    monkeypatch.setattr(ingest, "OVERLAP", dt.timedelta(0))
    source, urls = recorded_source(config)
    quiet = sync.sync_site(setup, sessions, source=source)
    # 2 identifier searches + 3 types x 2 patient batches, the statement, one empty history per type.
    assert len(urls) == quiet.ehr_requests == 2 + 3 * 2 + 1 + 3
    assert sorted(urllib.parse.urlsplit(u).path.rsplit("/", 2)[-2] for u in urls if "_history" in u) == [
        "MedicationAdministration",
        "Observation",
        "Procedure",
    ]
    assert quiet.vanished == 0


def test_many_deletions_at_once_are_held_by_the_guard_until_the_sweep_and_a_person_agree(
    fhir_server_factory: FhirServerFactory, tmp_path: Path
) -> None:
    server = north_server(fhir_server_factory)
    config, setup, sessions = synced(server, tmp_path)
    first = repository_records(config)
    with sessions() as session:
        ids = session.scalars(
            sa.select(models.SourceResource.resource_id).where(
                models.SourceResource.resource_type == "MedicationAdministration"
            )
        ).all()
    assert len(ids) > 10
    for resource_id in ids:  # the pharmacy's interface emptied its history, or the server lies
        server.delete("MedicationAdministration", resource_id)

    summary = sync.sync_site(setup, sessions)
    assert summary.held == {"MedicationAdministration": len(ids)} and summary.vanished == 0
    assert delivered(config, sessions) == first  # nothing retracted
    with sessions() as session:
        held = session.get(models.IssueRow, "demo-north|retraction_held|retire:MedicationAdministration")
        assert held is not None and held.status == "open"
        outcomes = set(
            session.scalars(
                sa.select(models.SourceResource.outcome).where(
                    models.SourceResource.resource_type == "MedicationAdministration"
                )
            )
        )
        assert "deleted" not in outcomes

    # The deletions are not kept: the sweep (a complete listing) finds them gone and goes through
    # the guard's approval path.
    sweep = sync.sync_site(setup, sessions, full=True)
    assert sweep.held == {"MedicationAdministration": len(ids)} and sweep.vanished == 0
    retraction_guard.accept(
        sessions, "demo-north", "MedicationAdministration", "the site confirmed it", actor="it"
    )
    accepted = sync.sync_site(setup, sessions, full=True)
    assert accepted.vanished == len(ids) and accepted.held == {}


def test_with_the_switch_off_deletions_wait_for_the_full_sweep(
    fhir_server_factory: FhirServerFactory, tmp_path: Path
) -> None:
    server = north_server(fhir_server_factory)
    config, setup, sessions = synced(server, tmp_path, deletions_from_history=False)
    server.delete("Procedure", TRANSPLANT)
    source, urls = recorded_source(config)
    summary = sync.sync_site(setup, sessions, source=source)
    assert summary.vanished == 0 and not any("_history" in u or "/metadata" in u for u in urls)
    assert sync.sync_site(setup, sessions, full=True).vanished == 1


def test_the_nightly_sweep_of_a_bulk_site_retires_what_an_export_without_deleted_files_hid(
    fhir_server_factory: FhirServerFactory, tmp_path: Path
) -> None:
    """sekmet's export never lists deletions: the incremental pass cannot see one, the --full pass must.

    The full pass first takes the incremental export for its Patients, then
    exports everything for its types; it is still a complete listing.
    """
    server = north_server(fhir_server_factory)
    config, setup, sessions = synced(server, tmp_path, kind="fhir-bulk", work_dir="bulk")
    server.delete("Procedure", TRANSPLANT)
    assert sync.sync_site(setup, sessions).vanished == 0
    assert stored(config, "Procedure", TRANSPLANT)[0] != "deleted"
    assert sync.sync_site(setup, sessions, full=True).vanished == 1
    assert stored(config, "Procedure", TRANSPLANT) == ("deleted", 0)


# ------------------------------------------------- what sekmet cannot be made to do, over sekmet


def over(server: FhirServer) -> responses.RequestsMock:
    """A mock over the real server: what a test registers is mocked, every other request reaches sekmet."""
    mock = responses.RequestsMock(assert_all_requests_are_fired=True)
    mock.add_passthru(server.root_url)
    return mock


def statement_without_history(server: FhirServer) -> dict[str, Any]:
    statement: dict[str, Any] = server.session.get(f"{server.base_url}/metadata", timeout=30).json()
    for rest_entry in statement["rest"]:
        for resource in rest_entry.get("resource", []):
            resource["interaction"] = [i for i in resource["interaction"] if i["code"] != "history-type"]
    return statement


def test_a_server_without_history_type_is_not_asked_for_history(
    fhir_server_factory: FhirServerFactory, tmp_path: Path
) -> None:
    server = north_server(fhir_server_factory)
    config, setup, sessions = synced(server, tmp_path)
    server.delete("Procedure", TRANSPLANT)
    source, urls = recorded_source(config)
    with over(server) as mock:
        mock.get(f"{server.base_url}/metadata", json=statement_without_history(server))
        summary = sync.sync_site(setup, sessions, source=source)
    assert summary.vanished == 0 and not any("_history" in u for u in urls)
    assert stored(config, "Procedure", TRANSPLANT)[0] != "deleted"
    assert sync.sync_site(setup, sessions, full=True).vanished == 1  # the sweep, as before


@pytest.mark.parametrize(
    "answer",
    [
        {"resourceType": "Bundle", "type": "searchset", "entry": []},
        {"resourceType": "Bundle", "type": "history", "entry": {"request": {"method": "DELETE"}}},
        {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "too-costly"}]},
        {
            "resourceType": "Bundle",
            "type": "history",
            "entry": [{"request": {"method": "DELETE", "url": f"Procedure/{TRANSPLANT}"}}],
            "link": [{"relation": "next", "url": "https://elsewhere.example/fhir/Procedure/_history?p=2"}],
        },
    ],
    ids=["searchset", "entry-not-a-list", "outcome", "next-link-elsewhere"],
)
def test_a_broken_history_skips_the_types_deletions_and_the_pass_goes_on(
    fhir_server_factory: FhirServerFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    answer: dict[str, Any],
) -> None:
    server = north_server(fhir_server_factory)
    config, setup, sessions = synced(server, tmp_path)
    server.delete("Procedure", TRANSPLANT)
    server.delete("Observation", CREATININE)
    with over(server) as mock, caplog.at_level(logging.WARNING, logger="adapter.fhir.history"):
        mock.get(f"{server.base_url}/Procedure/_history", json=answer)
        summary = sync.sync_site(setup, sessions)
    assert summary.vanished == 1  # the Observation's history was fine
    assert stored(config, "Observation", CREATININE)[0] == "deleted"
    assert stored(config, "Procedure", TRANSPLANT)[0] != "deleted"
    warnings = [r for r in caplog.records if r.name == "adapter.fhir.history"]
    assert len(warnings) == 1 and getattr(warnings[0], "resource_type", None) == "Procedure"
    assert "next full sweep" in warnings[0].getMessage() and TRANSPLANT not in warnings[0].getMessage()
    with sessions() as session:  # a skipped history is no server fault: the sync is fine
        assert not session.scalars(
            sa.select(models.IssueRow).where(models.IssueRow.kind == "server_fault")
        ).all()
    assert sync.sync_site(setup, sessions, full=True).vanished == 1


def test_a_server_that_cannot_say_what_it_offers_costs_no_deletions_and_no_pass(
    fhir_server_factory: FhirServerFactory, tmp_path: Path
) -> None:
    server = north_server(fhir_server_factory)
    config, setup, sessions = synced(server, tmp_path)
    server.delete("Procedure", TRANSPLANT)
    source, urls = recorded_source(config)
    with over(server) as mock:
        mock.get(f"{server.base_url}/metadata", status=404, json={"resourceType": "OperationOutcome"})
        summary = sync.sync_site(setup, sessions, source=source)
    assert summary.vanished == 0 and not any("_history" in u for u in urls)
    assert sum("/metadata" in u for u in urls) == 1  # asked once, not again for every type


# ------------------------------------------------------------------ Bulk Data: the deleted files


def deletion_bundle(*refs: str) -> bytes:
    entries = [{"request": {"method": "DELETE", "url": ref}} for ref in refs]
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode() + b"\n"


def test_an_incremental_export_listing_a_deletion_retires_it(
    fhir_server_factory: FhirServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = north_server(fhir_server_factory)
    config, setup, sessions = synced(server, tmp_path, kind="fhir-bulk", work_dir="bulk")
    first = repository_records(config)
    server.delete("Procedure", TRANSPLANT)

    # sekmet's manifests list no deletions (Bulk Data v2's "deleted"): the incremental export's
    # manifest gets one file, served over the real server.
    deleted_url = f"{server.base_url}/bulk-deleted/1.ndjson"
    real_poll = bulk.BulkExport._poll

    def poll(exporter: bulk.BulkExport, state: bulk.ExportState) -> dict[str, Any]:
        manifest = real_poll(exporter, state)
        assert state.since is not None  # the second export asks for changes only
        manifest["deleted"] = [{"type": "Bundle", "url": deleted_url}]
        return manifest

    monkeypatch.setattr(bulk.BulkExport, "_poll", poll)
    with over(server) as mock:
        mock.get(deleted_url, body=deletion_bundle(f"Procedure/{TRANSPLANT}", "Observation/elsewhere"))
        summary = sync.sync_site(setup, sessions)
    assert summary.vanished == 1 and summary.retractions >= 1
    assert stored(config, "Procedure", TRANSPLANT) == ("deleted", 0)
    after = delivered(config, sessions)
    assert len(after["Transplant.ndjson"]) == len(first["Transplant.ndjson"]) - 1
