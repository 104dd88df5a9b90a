"""The health endpoint, readiness, and the metrics read from the state database."""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapter import config as config_mod
from adapter import errors, paths
from adapter.fhir import http as fhir_http
from adapter.service import health, job, metrics, status
from adapter.store import counts, db
from adapter.sync import SyncSummary

from fhirserver import FhirServerFactory, fhir_server_factory  # noqa: F401
from support import TEST_SECRET, prepare_demo_workdir

DemoRun = tuple[config_mod.Config, job.JobResult]


def metric_samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A ``/metrics`` page as (sample name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def fetch(address: str, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def endpoint() -> Iterator[tuple[health.HealthServer, dict[str, object]]]:
    """An endpoint whose probes the test sets."""
    answers: dict[str, object] = {"alive": True, "ready": status.Readiness(True, [])}
    probes = health.Probes(
        alive=lambda: bool(answers["alive"]),
        ready=lambda: answers["ready"],  # type: ignore[return-value,arg-type]
    )
    server = health.HealthServer("127.0.0.1:0", probes)
    server.start()
    yield server, answers
    server.stop()


def test_healthz_and_readyz_answer_from_the_probes(
    endpoint: tuple[health.HealthServer, dict[str, object]],
) -> None:
    server, answers = endpoint
    assert fetch(server.address, "/healthz") == (200, "ok\n")
    assert fetch(server.address, "/readyz") == (200, '{"ready":true,"problems":[]}\n')
    answers["alive"] = False
    answers["ready"] = status.Readiness(False, ["demo-east: no successful sync yet"])
    assert fetch(server.address, "/healthz")[0] == 503
    assert fetch(server.address, "/readyz") == (
        503,
        '{"ready":false,"problems":["demo-east: no successful sync yet"]}\n',
    )
    assert fetch(server.address, "/nothing-here")[0] == 404


def test_metrics_page_has_the_counters(endpoint: tuple[health.HealthServer, dict[str, object]]) -> None:
    server, _ = endpoint
    assert fhir_http.RESPONSES is not None
    summary = SyncSummary(
        site="health-test", resources_read=7, facts_written=5, upserts=3, ehr_requests=4, seconds=1.5
    )
    metrics.record_sync(summary, kind="sync", outcome="ok")
    code, body = fetch(server.address, "/metrics")
    assert code == 200
    samples = metric_samples(body)
    site = (("site", "health-test"),)
    assert samples[("trial_adapter_resources_fetched_total", site)] == 7
    assert samples[("trial_adapter_facts_written_total", site)] == 5
    assert samples[("trial_adapter_ehr_requests_total", site)] == 4
    assert samples[("trial_adapter_records_enqueued_total", (("operation", "upsert"), *site))] == 3
    assert samples[("trial_adapter_sync_runs_total", (("kind", "sync"), ("outcome", "ok"), *site))] == 1
    assert samples[("trial_adapter_last_sync_duration_seconds", site)] == 1.5
    assert "# TYPE trial_adapter_http_responses_total counter" in body, "the FHIR client's counter shows too"


def test_the_ehr_requests_of_a_sync_show_on_the_metrics_page(
    endpoint: tuple[health.HealthServer, dict[str, object]],
    fhir_server_factory: FhirServerFactory,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A pass against a real FHIR server: ``/metrics`` counts the requests it sent, as the summary does."""
    server, _ = endpoint
    fhir = fhir_server_factory()
    fhir.load_ndjson(paths.demo_data_dir() / "demo-north")
    config = fhir_rest_config(tmp_path, fhir.base_url, "demo-north")
    key = ("trial_adapter_ehr_requests_total", (("site", "demo-north"),))
    before = metric_samples(fetch(server.address, "/metrics")[1])
    summary = job.run_once(config, config.sites).syncs[0]
    metrics.record_sync(summary, kind="sync", outcome="ok")  # what the service does after each pass
    after = metric_samples(fetch(server.address, "/metrics")[1])
    answered = http_responses(after, "demo-north") - http_responses(before, "demo-north")
    assert summary.ehr_requests > 0 and answered == summary.ehr_requests, "every request was answered once"
    assert after[key] - before.get(key, 0.0) == summary.ehr_requests


def fhir_rest_config(workdir: Path, base_url: str, site_id: str) -> config_mod.Config:
    """The demo config with one site reading from a FHIR server (REST search) instead of its folder."""
    demo = prepare_demo_workdir(workdir)
    raw = demo.model_dump(mode="json", exclude={"source_file"}, exclude_defaults=True)
    raw["study"] = {"id": demo.study.id, "mappings": str(demo.study.mappings)}
    raw["sites"] = [site for site in raw["sites"] if site["id"] == site_id]
    raw["sites"][0]["source"] = {"kind": "fhir-rest", "base_url": base_url}
    return config_mod.config_from_dict(raw, base_dir=workdir)


def http_responses(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], site_id: str) -> float:
    """The FHIR client's own count of a site's responses, over all statuses."""
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "trial_adapter_http_responses_total" and ("site", site_id) in labels
    )


def test_a_busy_port_is_a_config_error_with_the_fix(
    endpoint: tuple[health.HealthServer, dict[str, object]],
) -> None:
    server, _ = endpoint
    with pytest.raises(errors.ConfigError) as caught:
        health.HealthServer(
            server.address, health.Probes(alive=lambda: True, ready=lambda: status.Readiness(True, []))
        )
    assert f"service.listen {server.address!r} cannot be used" in str(caught.value)
    assert "--listen" in str(caught.value)
    with pytest.raises(errors.ConfigError, match="is not HOST:PORT"):
        health.HealthServer(
            "localhost", health.Probes(alive=lambda: True, ready=lambda: status.Readiness(True, []))
        )


def gauges(collector: metrics.StoreCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()
        for sample in family.samples
    }


def test_store_gauges_agree_with_the_database(demo_run: DemoRun) -> None:
    config, _ = demo_run
    sessions = db.open_store(config.store.url)
    values = gauges(metrics.StoreCollector(sessions, [site.id for site in config.sites]))
    with sessions() as session:
        for site in config.sites:
            for kind, count in counts.open_issue_counts(session, site.id).items():
                assert values[("trial_adapter_open_issues", (("kind", kind), ("site", site.id)))] == count
            assert values[("trial_adapter_outbox_pending", (("site", site.id),))] == 0
            assert values[("trial_adapter_last_success_timestamp_seconds", (("site", site.id),))] > 0
            for record_type, count in counts.record_counts(session, site.id).items():
                key = ("trial_adapter_records_current", (("record_type", record_type), ("site", site.id)))
                assert values[key] == count
    assert values[("trial_adapter_store_up", ())] == 1
    assert values[("trial_adapter_outbox_oldest_age_seconds", ())] == 0


def test_metric_labels_carry_no_subject_or_patient_data(demo_run: DemoRun) -> None:
    config, _ = demo_run
    sessions = db.open_store(config.store.url)
    allowed = {"site", "kind", "record_type", "operation", "outcome", "status", "resource_type"}
    for family in metrics.StoreCollector(sessions, [site.id for site in config.sites]).collect():
        for sample in family.samples:
            assert set(sample.labels) <= allowed, sample
            assert not any(value.startswith("S-") or "Patient" in value for value in sample.labels.values())
    assert TEST_SECRET.strip() not in metrics.exposition()[0].decode()


def test_an_unreachable_database_shows_as_store_down_not_a_failed_scrape(tmp_path: object) -> None:
    sessions = db.open_store(f"sqlite:///{tmp_path}/state.db")
    sessions.kw["bind"] = db.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    values = gauges(metrics.StoreCollector(sessions, ["a"]))
    assert values == {("trial_adapter_store_up", ()): 0}


def test_readiness_wants_every_site_synced_within_a_few_intervals(
    demo_run: DemoRun, tmp_path: object
) -> None:
    config, _ = demo_run
    sessions = db.open_store(config.store.url)
    assert status.readiness(sessions, config) == status.Readiness(True, [])
    days_later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    stale = status.readiness(sessions, config, now=days_later)
    assert not stale.ready
    assert [problem.split(":")[0] for problem in stale.problems] == [site.id for site in config.sites]
    assert "more than 3h00m allowed" in stale.problems[0]

    empty = db.open_store(f"sqlite:///{tmp_path}/empty.db")
    assert status.readiness(empty, config).problems == [
        f"{site.id}: no successful sync yet" for site in config.sites
    ]
    empty.kw["bind"] = db.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    down = status.readiness(empty, config)
    assert not down.ready and down.problems[0].startswith("state database unreachable")
