"""EHR servers that bend the standard, through the quirk proxy in front of a real FHIR server.

For each quirk real EHRs are documented to have (``tests/quirkproxy.py``):
``check`` names it, a sync stores nothing the search did not ask for and
loses nothing already committed, and with the setting that adapts to it the
delivered records equal those of the well-behaved server (the NDJSON folder's).
The server holds both demo sites plus non-roster patients with the same codes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import sqlalchemy as sa

from adapter import config as config_mod
from adapter import errors, sync
from adapter.fhir import capability, probe
from adapter.fhir import settings as fhir_settings
from adapter.fhir.check_row import CheckRow
from adapter.mapping import discovery
from adapter.mapping.issues import IssueKind
from adapter.service import job
from adapter.store import db, models

from fhirtesting import server_config
from golden import repository_records
from quirkproxy import Quirks, QuirkServer

pytestmark = pytest.mark.slow  # seconds each: real processes or servers (README: fast local run)

SITE = "demo-north"
Records = dict[str, dict[str, list[dict[str, Any]]]]


def config_for(tmp_path: Path, server: QuirkServer, site: str = SITE, **source: Any) -> config_mod.Config:
    source.setdefault("page_size", 40)
    source.setdefault("patient_batch_size", 3)
    return server_config(tmp_path, server.url, (site,), **source)


def stored_ids(config: config_mod.Config) -> set[str]:
    with db.open_store(config.store.url)() as session:
        rows = session.execute(
            sa.select(models.SourceResource.resource_type, models.SourceResource.resource_id)
        )
        return {f"{kind}/{rid}" for kind, rid in rows}


def foreign_refs(server: QuirkServer) -> set[str]:
    return {f"{kind}/{rid}" for kind, ids in server.foreign.items() for rid in ids}


def open_faults(config: config_mod.Config) -> list[models.IssueRow]:
    with db.open_store(config.store.url)() as session:
        query = sa.select(models.IssueRow).where(
            models.IssueRow.kind == IssueKind.SERVER_FAULT.value, models.IssueRow.status == "open"
        )
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


def fault_count(fault: str, site: str = SITE) -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        "trial_adapter_server_faults_total", {"site": site, "fault": fault}
    )
    return value or 0.0


def behaviour(config: config_mod.Config) -> dict[str, CheckRow]:
    setup = sync.SiteSetup.load(config, config.sites[0])
    source = config.sites[0].source
    assert isinstance(source, fhir_settings.RestSource)
    wanted = discovery.source_wanted(setup.catalog)
    rows = capability.check_server(setup.site.id, source, roster=setup.roster, wanted=wanted)
    return {row.item: row for row in rows if row.item.startswith("behaviour:")}


def red(row: CheckRow) -> bool:
    return not row.ok


def test_a_well_behaved_server_checks_green_and_syncs_like_the_folder(
    quirk_server: QuirkServer, ndjson_records: Records, tmp_path: Path
) -> None:
    config = config_for(tmp_path, quirk_server)
    rows = behaviour(config)
    assert rows and all(row.ok and not row.warning for row in rows.values()), rows
    job.run_once(config, config.sites)
    assert repository_records(config) == ndjson_records[SITE]
    assert not stored_ids(config) & foreign_refs(quirk_server)


def test_next_links_that_drop_the_search_are_repaired_or_refused(
    quirk_server: QuirkServer, ndjson_records: Records, tmp_path: Path
) -> None:
    quirk_server.quirks = Quirks(next_drops_params=True)
    refusing = config_for(tmp_path / "refuse", quirk_server, next_links="refuse")
    assert red(behaviour(refusing)[probe.ITEM_NEXT_LINKS])
    before = fault_count("next_link_drops_params")
    with pytest.raises(errors.ServerFault, match="next links drop the search parameters") as caught:
        job.run_once(refusing, refusing.sites)
    assert caught.value.exit_code == errors.EXIT_SERVER_FAULT
    assert fault_count("next_link_drops_params") == before + 1
    assert [row.code for row in open_faults(refusing)] == ["next_link_drops_params"]
    assert "next_links" in open_faults(refusing)[0].detail
    first_pages = stored_ids(refusing)  # a page whose next link is refused is not stored either
    assert not first_pages & foreign_refs(quirk_server)

    # The same state, now repairing: the pass completes, the records are the folder's, the issue resolves.
    repairing = config_for(tmp_path / "refuse", quirk_server, next_links="repair")
    assert behaviour(repairing)[probe.ITEM_NEXT_LINKS].ok
    job.run_once(repairing, repairing.sites)
    assert quirk_server.injected["next_drops_params"] > 0
    assert repository_records(repairing) == ndjson_records[SITE]
    assert first_pages <= stored_ids(repairing)
    assert not stored_ids(repairing) & foreign_refs(quirk_server)
    assert open_faults(repairing) == []


def test_a_server_ignoring_last_updated_is_a_fault_until_incremental_is_off(
    quirk_server: QuirkServer, ndjson_records: Records, tmp_path: Path
) -> None:
    config = config_for(tmp_path, quirk_server)
    job.run_once(config, config.sites)  # a first, full pass asks no _lastUpdated
    quirk_server.quirks = Quirks(last_updated_ignored=True)
    assert red(behaviour(config)[probe.ITEM_LAST_UPDATED])
    # Later passes ask for changes since their watermark; everything on the server is older.
    with db.open_store(config.store.url).begin() as session:
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
        session.execute(sa.update(models.SyncCursor).values(watermark=later))
    with pytest.raises(errors.ServerFault, match="ignores _lastUpdated") as caught:
        job.run_once(config, config.sites)
    assert caught.value.fault == "last_updated_ignored" and caught.value.setting == "incremental"
    assert [row.code for row in open_faults(config)] == ["last_updated_ignored"]

    full_every_time = config_for(tmp_path, quirk_server, incremental=False)
    assert behaviour(full_every_time)[probe.ITEM_LAST_UPDATED].ok
    quirk_server.proxy.trace.clear()
    job.run_once(full_every_time, full_every_time.sites)
    assert repository_records(full_every_time) == ndjson_records[SITE]
    assert open_faults(full_every_time) == []
    assert not any("_lastUpdated" in str(entry) for entry in quirk_server.proxy.trace)


@pytest.mark.parametrize("or_list", ["refuse", "first_only"])
def test_or_lists_that_fail_are_named_by_check_and_batch_size_one_reads_everything(
    quirk_server: QuirkServer, ndjson_records: Records, tmp_path: Path, or_list: str
) -> None:
    quirk_server.quirks = Quirks(or_list=or_list)
    batched = config_for(tmp_path / "batched", quirk_server, patient_batch_size=3)
    rows = behaviour(batched)
    assert (
        red(rows[probe.ITEM_IDENTIFIERS]) and "patient_batch_size = 1" in rows[probe.ITEM_IDENTIFIERS].detail
    )
    single = config_for(tmp_path / "single", quirk_server, patient_batch_size=1)
    assert behaviour(single)[probe.ITEM_IDENTIFIERS].ok
    job.run_once(single, single.sites)
    assert repository_records(single) == ndjson_records[SITE]


@pytest.mark.parametrize(
    ("quirks", "fault", "site"),
    [
        (Quirks(extra_patients=True), "unasked_patient", "demo-north"),
        # demo-east's roster patients also have results under codes outside the protocol
        (Quirks(extra_codes=True), "unasked_code", "demo-east"),
    ],
)
def test_results_that_were_not_asked_for_stop_the_search_and_are_never_stored(
    quirk_server: QuirkServer, tmp_path: Path, quirks: Quirks, fault: str, site: str
) -> None:
    quirk_server.quirks = quirks
    config = config_for(tmp_path, quirk_server, site)
    if fault == "unasked_patient":  # the probes' patients have only protocol codes: no other code to see
        assert red(behaviour(config)[probe.ITEM_PATIENTS])
    before = fault_count(fault, site)
    with pytest.raises(errors.ServerFault) as caught:
        job.run_once(config, config.sites)
    assert caught.value.fault == fault
    assert fault_count(fault, site) == before + 1
    assert not stored_ids(config) & foreign_refs(quirk_server)
    assert not stored_ids(config) & set(quirk_server.added)
    faults = open_faults(config)
    assert [row.code for row in faults] == [fault]
    assert "Patient/" not in faults[0].detail  # the message names searches, never a patient


def test_extra_patients_from_a_patient_search_are_dropped(quirk_server: QuirkServer, tmp_path: Path) -> None:
    config = config_for(tmp_path, quirk_server)
    setup = sync.SiteSetup.load(config, config.sites[0])
    quirk_server.quirks = Quirks(extra_patients=True)
    source = setup.make_source()
    found = {line.resource["id"] for line in source.patients() if hasattr(line, "resource")}
    assert quirk_server.injected["extra_patients"] > 0
    assert found == set(quirk_server.roster_patients[SITE])


def test_a_capped_count_pages_on_and_warnings_in_bundles_change_nothing(
    quirk_server: QuirkServer, ndjson_records: Records, tmp_path: Path
) -> None:
    quirk_server.quirks = Quirks(count_cap=7, outcome_warning=True)
    config = config_for(tmp_path, quirk_server, page_size=40)
    row = behaviour(config)[probe.ITEM_COUNT]
    assert row.warning and "page_size = 7" in row.detail
    job.run_once(config, config.sites)
    assert quirk_server.injected["count_cap"] > 0 and quirk_server.injected["outcome_warning"] > 0
    assert repository_records(config) == ndjson_records[SITE]


def test_a_required_category_is_named_and_the_setting_adds_it(
    quirk_server: QuirkServer, ndjson_records: Records, tmp_path: Path
) -> None:
    quirk_server.quirks = Quirks(category_required=True)
    plain = config_for(tmp_path / "plain", quirk_server)
    assert red(behaviour(plain)[probe.ITEM_CATEGORY])
    with pytest.raises(errors.SourceError):
        job.run_once(plain, plain.sites)
    categories = ["laboratory", "vital-signs", "survey", "imaging"]
    adapted = config_for(tmp_path / "adapted", quirk_server, observation_category=categories)
    assert behaviour(adapted)[probe.ITEM_CATEGORY].ok
    job.run_once(adapted, adapted.sites)
    assert repository_records(adapted) == ndjson_records[SITE]


def test_a_server_ignoring_strict_handling_is_a_warning_and_syncs_unchanged(
    quirk_server: QuirkServer, ndjson_records: Records, tmp_path: Path
) -> None:
    quirk_server.quirks = Quirks(strict_ignored=True)
    config = config_for(tmp_path, quirk_server)
    assert behaviour(config)[probe.ITEM_STRICT].warning
    job.run_once(config, config.sites)
    assert repository_records(config) == ndjson_records[SITE]
