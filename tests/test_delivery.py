"""The outbox: nothing is dropped, order per subject holds, failures become issues."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
import responses
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter.delivery import outbox
from adapter.delivery.report import outbox_report
from adapter.service import job
from adapter.sinks import factory as sink_factory
from adapter.sinks import settings as sink_settings
from adapter.sinks.base import Delivery, DeliveryResult, PlannedRequest
from adapter.sinks.file import FileSink
from adapter.store import counts, db, models, records
from adapter.sync import SiteSetup, remap_site

from golden import repository_records
from support import demo_sandbox

CREATININE_LOCAL = '"http://hospital-east.example/fhir/lis|0045" = "creatinine"'


class FlakySink:
    """Fails every delivery while ``down`` is set; records what arrived."""

    description = "flaky"
    batch_size = 500

    def __init__(self) -> None:
        self.down = True
        self.arrived: list[tuple[str, str]] = []

    def deliver(self, batch: Sequence[Delivery]) -> list[DeliveryResult]:
        if self.down:
            return [DeliveryResult(d.item_id, ok=False, error="503 Service Unavailable") for d in batch]
        self.arrived += [(d.record_id, d.operation) for d in batch]
        return [DeliveryResult(d.item_id, ok=True) for d in batch]

    def preview(self, batch: Sequence[Delivery]) -> list[PlannedRequest]:
        return []


def test_outage_then_recovery_delivers_everything_once_in_order(tmp_path: object) -> None:
    sessions = db.open_store(f"sqlite:///{tmp_path}/state.db")
    with sessions.begin() as session:
        records.reconcile_records(session, "s", "S-1", {"a": {"record_type": "Transplant", "v": 1}})
        records.reconcile_records(session, "s", "S-1", {"a": {"record_type": "Transplant", "v": 2}})
        records.reconcile_records(session, "s", "S-1", {})  # retraction
    sink = FlakySink()
    clock = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
    for _ in range(5):  # an hour-long outage: every attempt fails
        summary = outbox.drain(sessions, sink, max_attempts=3, now=lambda: clock[0])
        clock[0] += dt.timedelta(hours=1)
    assert summary.delivered == 0
    with sessions() as session:
        failed = session.scalars(
            sa.select(models.IssueRow).where(models.IssueRow.kind == "delivery_failed")
        ).all()
        assert len(failed) == 3 and all("503" in f.detail and "stays queued" in f.detail for f in failed)
    sink.down = False
    summary = outbox.drain(sessions, sink, now=lambda: clock[0])
    assert sink.arrived == [("a", "upsert"), ("a", "upsert"), ("a", "retract")]
    assert summary.delivered == 3
    assert outbox.drain(sessions, sink, now=lambda: clock[0]).delivered == 0
    with sessions() as session:
        statuses = session.scalars(
            sa.select(models.IssueRow.status).where(models.IssueRow.kind == "delivery_failed")
        ).all()
    assert statuses == ["resolved"] * 3


def test_backoff_grows_and_is_capped() -> None:
    assert outbox.backoff(1) == dt.timedelta(seconds=30)
    assert outbox.backoff(3) == dt.timedelta(seconds=120)
    assert outbox.backoff(30) == dt.timedelta(hours=1)


def test_unchanged_records_enqueue_nothing(tmp_path: object) -> None:
    sessions = db.open_store(f"sqlite:///{tmp_path}/state.db")
    payload = {"a": {"record_type": "Transplant", "v": 1}}
    with sessions.begin() as session:
        assert records.reconcile_records(session, "s", "S-1", payload) == (1, 0)
        assert records.reconcile_records(session, "s", "S-1", payload) == (0, 0)
        assert records.reconcile_records(session, "s", "S-1", {}) == (0, 1)
        assert records.reconcile_records(session, "s", "S-1", {}) == (0, 0)


# ----------------------------------------------------------------- edges of "exactly once in effect"


class RecordingSink:
    """Takes everything, remembers what arrived in which order."""

    description = "recording"
    batch_size = 500

    def __init__(self) -> None:
        self.arrived: list[Delivery] = []

    def deliver(self, batch: Sequence[Delivery]) -> list[DeliveryResult]:
        self.arrived += batch
        return [DeliveryResult(d.item_id, ok=True) for d in batch]

    def preview(self, batch: Sequence[Delivery]) -> list[PlannedRequest]:
        return []


class CrashAfterDelivering:
    """Delivers to a real file sink, then dies before the outbox can record it."""

    description = "crashing"
    batch_size = 500

    def __init__(self, sink: FileSink) -> None:
        self.sink = sink

    def deliver(self, batch: Sequence[Delivery]) -> list[DeliveryResult]:
        self.sink.deliver(batch)
        raise SystemExit("power cut between delivery and acknowledgement")

    def preview(self, batch: Sequence[Delivery]) -> list[PlannedRequest]:
        return []


class OutageThenRecovery:
    """An HTTP-like repository that is down until ``up`` is set; reports outages like the real sinks."""

    description = "outage"
    batch_size = 500

    def __init__(self) -> None:
        self.up = False
        self.calls = 0
        self.arrived: list[tuple[str, str, str, int]] = []

    def deliver(self, batch: Sequence[Delivery]) -> list[DeliveryResult]:
        self.calls += 1
        if not self.up:
            return [DeliveryResult(batch[0].item_id, ok=False, error="503 Service Unavailable", outage=True)]
        self.arrived += [(d.subject_id, d.record_id, d.operation, d.payload.get("v", 0)) for d in batch]
        return [DeliveryResult(d.item_id, ok=True) for d in batch]

    def preview(self, batch: Sequence[Delivery]) -> list[PlannedRequest]:
        return []


def record(record_id: str, record_type: str, subject: int, version: int) -> dict[str, object]:
    return {"record_id": record_id, "record_type": record_type, "subject_id": f"S-{subject}", "v": version}


def enqueue_history(sessions: sessionmaker[Session], subjects: int = 4, versions: int = 3) -> None:
    """Per subject: records a and b change ``versions`` times, then b vanishes."""
    for version in range(1, versions + 1):
        with sessions.begin() as session:
            for n in range(subjects):
                records.reconcile_records(
                    session,
                    "s",
                    f"S-{n}",
                    {
                        f"a-{n}": record(f"a-{n}", "Transplant", n, version),
                        f"b-{n}": record(f"b-{n}", "MrdResult", n, version),
                    },
                )
    with sessions.begin() as session:
        for n in range(subjects):
            records.reconcile_records(
                session,
                "s",
                f"S-{n}",
                {f"a-{n}": record(f"a-{n}", "Transplant", n, versions)},
            )


def outbox_order(sessions: sessionmaker[Session]) -> list[tuple[str, str, str, int]]:
    with sessions() as session:
        items = session.scalars(sa.select(models.OutboxItem).order_by(models.OutboxItem.id)).all()
        return [(i.subject_id, i.record_id, i.operation, orjson.loads(i.payload).get("v", 0)) for i in items]


def test_crash_between_delivery_and_acknowledgement_redelivers_harmlessly(tmp_path: Path) -> None:
    sessions = db.open_store(f"sqlite:///{tmp_path}/state.db")
    enqueue_history(sessions)
    reference = tmp_path / "reference"
    FileSink(reference).deliver(delivery_items(sessions))  # what one clean delivery writes
    repository = tmp_path / "repository"
    with pytest.raises(SystemExit):
        outbox.drain(sessions, CrashAfterDelivering(FileSink(repository)))
    with sessions() as session:
        waiting = counts.outbox_backlog(session).pending
    assert waiting == len(outbox_order(sessions)), "nothing was acknowledged"
    assert outbox.drain(sessions, FileSink(repository)).delivered == len(outbox_order(sessions))
    for name in ("Transplant.ndjson", "MrdResult.ndjson"):
        assert (repository / name).read_bytes() == (reference / name).read_bytes()
    assert outbox.drain(sessions, FileSink(repository)).delivered == 0


def delivery_items(sessions: sessionmaker[Session]) -> list[Delivery]:
    with sessions() as session:
        items = session.scalars(sa.select(models.OutboxItem).order_by(models.OutboxItem.id)).all()
        return outbox.deliveries(session, items)


def test_an_hour_long_outage_then_everything_arrives_in_order_once(tmp_path: Path) -> None:
    sessions = db.open_store(f"sqlite:///{tmp_path}/state.db")
    enqueue_history(sessions)
    expected = outbox_order(sessions)
    sink = OutageThenRecovery()
    clock = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
    for _ in range(12):  # an hour of five-minute passes against a dead repository
        summary = outbox.drain(sessions, sink, batch_size=5, now=lambda: clock[0])
        assert summary.delivered == 0 and (summary.stopped or summary.failed == 0)
        clock[0] += dt.timedelta(minutes=5)
    assert sink.calls <= 12, "each pass stops at the first outage instead of trying every batch"
    with sessions() as session:
        tried = session.scalars(sa.select(models.OutboxItem.attempts)).all()
    assert sum(tried) <= 12 and max(tried) >= 1

    sink.up = True
    clock[0] += dt.timedelta(hours=1)  # past any backoff
    total = 0
    for _ in range(3):
        total += outbox.drain(sessions, sink, batch_size=5, now=lambda: clock[0]).delivered
    assert total == len(expected)
    assert sorted(sink.arrived) == sorted(expected), "every change once"
    for subject in {s for s, *_ in expected}:
        assert [a for a in sink.arrived if a[0] == subject] == [e for e in expected if e[0] == subject]


def test_retractions_reach_the_sink_with_the_record_they_withdraw(tmp_path: Path) -> None:
    sessions = db.open_store(f"sqlite:///{tmp_path}/state.db")
    enqueue_history(sessions, subjects=1, versions=2)
    sink = RecordingSink()
    outbox.drain(sessions, sink)
    [retraction] = [d for d in sink.arrived if d.operation == "retract"]
    assert retraction.payload == {
        "record_id": "b-0",
        "record_type": "MrdResult",
        "subject_id": "S-0",
        "site": "s",
    }
    assert retraction.previous == record("b-0", "MrdResult", 0, 2)
    assert all(d.enqueued_at is not None and d.enqueued_at.tzinfo is not None for d in sink.arrived)
    assert all(d.previous is None for d in sink.arrived if d.operation == "upsert")


def test_a_changed_mapping_goes_out_as_upserts_and_retractions(tmp_path: Path) -> None:
    config = demo_sandbox(tmp_path, own_mappings=True)
    mappings = tmp_path / "mappings"
    job.run_once(config, config.sites)
    before = {r["record_id"]: r for records in repository_records(config).values() for r in records}

    # The site stops mapping its local creatinine code: eligibility changes, nothing else may.
    override = mappings / "sites" / "demo-east.toml"
    override.write_text(override.read_text().replace(CREATININE_LOCAL, ""))
    sessions = db.open_store(config.store.url)
    remap_site(SiteSetup.load(config, config.site("demo-east")), sessions)
    sink = RecordingSink()
    outbox.drain(sessions, sink)
    upserts = {d.record_id: d for d in sink.arrived if d.operation == "upsert"}
    retracts = {d.record_id: d for d in sink.arrived if d.operation == "retract"}
    # Only records whose content changed go out, carrying the new catalog version as
    # provenance; a record that would differ only in that stamp is not sent again.
    assert upserts and {before[r]["site"] for r in upserts if r in before} == {"demo-east"}
    assert all(item.payload["catalog_version"] != before[r]["catalog_version"] for r, item in upserts.items())

    def clinical(payload: dict[str, object]) -> dict[str, object]:
        return {k: v for k, v in payload.items() if k != "catalog_version"}

    assert all(r in before and clinical(item.payload) != clinical(before[r]) for r, item in upserts.items())
    assert {before[r]["record_type"] for r in upserts} == {"EligibilityAssessment"}
    for record_id, item in retracts.items():
        assert item.previous == before[record_id]
    # And vanished ones as retractions: drop the MRD concept's local codes too.
    override.write_text(
        "\n".join(line for line in override.read_text().splitlines() if '= "mrd_' not in line) + "\n"
    )
    remap_site(SiteSetup.load(config, config.site("demo-east")), sessions)
    sink = RecordingSink()
    outbox.drain(sessions, sink)
    vanished = {d.record_id for d in sink.arrived if d.operation == "retract"}
    east_mrd = {
        r for r, rec in before.items() if rec["record_type"] == "MrdResult" and rec["site"] == "demo-east"
    }
    assert east_mrd and vanished >= east_mrd
    for item in (d for d in sink.arrived if d.record_id in east_mrd):
        # It withdraws the record as last sent: the first run's, which the catalog change did not re-send.
        assert item.operation == "retract" and item.previous == before[item.record_id]


def test_outbox_report_and_dry_run_selection(tmp_path: Path) -> None:
    sessions = db.open_store(f"sqlite:///{tmp_path}/state.db")
    enqueue_history(sessions, subjects=2, versions=1)
    clock = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    sink = FlakySink()
    outbox.drain(sessions, sink, now=lambda: clock)
    with sessions() as session:
        report = outbox_report(session)
    assert report.pending == 6 and report.failing == 6 and report.delivered == 0
    assert report.pending_by_type == {"Transplant": {"upsert": 2}, "MrdResult": {"upsert": 2, "retract": 2}}
    assert report.failures[0].last_error == "503 Service Unavailable" and report.failures[0].attempts == 1
    assert report.to_json()["oldest_pending_at"] is not None
    assert outbox.due_deliveries(sessions, now=lambda: clock) == []  # all in backoff
    later = clock + dt.timedelta(hours=2)
    due = outbox.due_deliveries(sessions, limit=4, now=lambda: later)
    assert [d.item_id for d in due] == [1, 2, 3, 4]


# ----------------------------------------------------------------- stopping (SIGTERM in the service)


def test_a_stopped_drain_leaves_the_rest_queued_and_the_next_sends_each_once(tmp_path: Path) -> None:
    sessions = db.open_store(f"sqlite:///{tmp_path}/state.db")
    enqueue_history(sessions)
    expected = outbox_order(sessions)
    sink = RecordingSink()
    summary = outbox.drain(sessions, sink, batch_size=3, should_stop=lambda: len(sink.arrived) >= 6)
    assert summary.interrupted and summary.stopped is None
    assert summary.delivered == 6, "stopped between batches, after the second"
    assert summary.waiting == len(expected) - 6
    with sessions() as session:
        assert counts.outbox_backlog(session).pending == len(expected) - 6

    again = outbox.drain(sessions, sink, batch_size=3)
    assert not again.interrupted and again.delivered == len(expected) - 6
    arrived = [(d.subject_id, d.record_id, d.operation, d.payload.get("v", 0)) for d in sink.arrived]
    assert arrived == expected, "every change once, in outbox order"
    assert outbox.drain(sessions, sink).delivered == 0


REPOSITORY = "https://trials.example.org/api"


@responses.activate
def test_a_stop_during_an_http_batch_ends_it_between_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = db.open_store(f"sqlite:///{tmp_path}/state.db")
    enqueue_history(sessions, subjects=2, versions=2)
    with sessions() as session:
        items = session.scalars(sa.select(models.OutboxItem).order_by(models.OutboxItem.id)).all()
        expected = [
            ("PUT" if i.operation == "upsert" else "DELETE", f"{REPOSITORY}/{i.record_type}/{i.record_id}")
            for i in items
        ]
    monkeypatch.setenv("REPO_TOKEN", "test-token")
    repository = sink_settings.HttpRepository.model_validate(
        {"kind": "http", "url": REPOSITORY, "auth": {"kind": "bearer", "token_env": "REPO_TOKEN"}}
    )
    for method in (responses.PUT, responses.DELETE):
        responses.add(method, re.compile(re.escape(REPOSITORY) + "/.*"), status=204)

    def sent() -> list[tuple[str, str]]:
        return [(call.request.method or "", call.request.url or "") for call in responses.calls]

    def stop() -> bool:
        return len(responses.calls) >= 3  # SIGTERM arrives while the third request is out

    summary = outbox.drain(sessions, sink_factory.make_sink(repository, should_stop=stop), should_stop=stop)
    assert summary.interrupted and summary.delivered == 3
    assert sent() == expected[:3], "one batch of all items, ended after the third request"
    with sessions() as session:
        assert counts.outbox_backlog(session).pending == len(expected) - 3
        assert not session.scalars(
            sa.select(models.OutboxItem).where(
                models.OutboxItem.delivered_at.is_(None), models.OutboxItem.attempts > 0
            )
        ).all(), "the untried items carry no failed attempt"

    again = outbox.drain(sessions, sink_factory.make_sink(repository))
    assert again.delivered == len(expected) - 3 and not again.interrupted
    assert sent() == expected, "the rest once, in order"


def test_the_delivery_job_hands_the_stop_check_to_the_drain(fresh_demo: config_mod.Config) -> None:
    job.run_once(fresh_demo, fresh_demo.sites, deliver=False)
    sessions = db.open_store(fresh_demo.store.url)
    with sessions() as session:
        queued = counts.outbox_backlog(session).pending
    stopped = job.deliver_outbox(fresh_demo, sessions, should_stop=lambda: True)  # SIGTERM already came
    assert stopped is not None and stopped.interrupted and stopped.delivered == 0
    assert stopped.waiting == queued
    resumed = job.deliver_outbox(fresh_demo, sessions)
    assert resumed is not None and resumed.delivered == queued and not resumed.interrupted
