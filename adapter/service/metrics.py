"""Prometheus metrics of the running service.

Two kinds, both in prometheus-client's default registry so that counters
other modules define (``trial_adapter_http_responses`` in the FHIR client)
appear on the same ``/metrics`` page:

- **counters** of what this process did (resources fetched, facts written,
  requests sent to the EHR, records enqueued and delivered, sync runs by
  outcome), updated after each job from its summary;
- **gauges read from the state database at scrape time** (open issues by
  kind, outbox backlog and the age of its oldest item, last successful sync
  per site, current records), so they are right even after a restart and
  agree with ``trial-adapter status``.

Labels carry only site ids, issue kinds, record and resource types and
outcomes, never a subject id or anything from a resource: metrics leave the
site's network more easily than logs do.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator

import prometheus_client
import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from adapter.delivery.outbox import DrainSummary
from adapter.store import counts, models
from adapter.sync import SyncSummary, retraction_guard

log = logging.getLogger(__name__)

PREFIX = "trial_adapter"

RESOURCES_FETCHED = prometheus_client.Counter(
    f"{PREFIX}_resources_fetched", "Source resources read from a site, by site.", ["site"]
)
RESOURCES_MAPPED = prometheus_client.Counter(
    f"{PREFIX}_resources_mapped", "New or changed source resources mapped, by site.", ["site"]
)
FACTS_WRITTEN = prometheus_client.Counter(
    f"{PREFIX}_facts_written", "Facts written by mapping, by site.", ["site"]
)
# What a pass costs the site's server (SyncSummary.ehr_requests: every try, 0 for a folder source),
# the figure site IT weighs against patient_batch_size and max_url_bytes.
EHR_REQUESTS = prometheus_client.Counter(
    f"{PREFIX}_ehr_requests", "HTTP requests sync passes sent to a site's EHR (every try), by site.", ["site"]
)
RECORDS_ENQUEUED = prometheus_client.Counter(
    f"{PREFIX}_records_enqueued",
    "Protocol record changes put in the outbox, by site and operation (upsert, retract).",
    ["site", "operation"],
)
RECORDS_DELIVERED = prometheus_client.Counter(
    f"{PREFIX}_records_delivered",
    "Outbox items the trial repository accepted, by record type.",
    ["record_type"],
)
DELIVERY_FAILURES = prometheus_client.Counter(
    f"{PREFIX}_delivery_failures", "Outbox items the trial repository refused (they are retried)."
)
SYNC_RUNS = prometheus_client.Counter(
    f"{PREFIX}_sync_runs",
    "Finished sync passes, by site, kind (sync, sweep) and outcome (ok, stopped, failed, busy, error).",
    ["site", "kind", "outcome"],
)
SYNC_SECONDS = prometheus_client.Gauge(
    f"{PREFIX}_last_sync_duration_seconds", "Duration of the latest sync pass, by site.", ["site"]
)


def record_sync(summary: SyncSummary, *, kind: str, outcome: str) -> None:
    """Count one finished pass."""
    site = summary.site
    RESOURCES_FETCHED.labels(site).inc(summary.resources_read)
    RESOURCES_MAPPED.labels(site).inc(summary.resources_mapped)
    FACTS_WRITTEN.labels(site).inc(summary.facts_written)
    EHR_REQUESTS.labels(site).inc(summary.ehr_requests)
    RECORDS_ENQUEUED.labels(site, "upsert").inc(summary.upserts)
    RECORDS_ENQUEUED.labels(site, "retract").inc(summary.retractions)
    SYNC_RUNS.labels(site, kind, outcome).inc()
    SYNC_SECONDS.labels(site).set(summary.seconds)


def record_unfinished(site: str, *, kind: str, outcome: str) -> None:
    """Count a pass that did not produce a summary (``busy``: locked elsewhere; ``error``)."""
    SYNC_RUNS.labels(site, kind, outcome).inc()


def record_delivery(drained: DrainSummary) -> None:
    for record_type, count in drained.by_type.items():
        RECORDS_DELIVERED.labels(record_type).inc(count)
    DELIVERY_FAILURES.inc(drained.failed)


class StoreCollector(Collector):
    """Gauges computed from the state database on every scrape.

    A scrape must not fail because the database is down (that is what the
    scrape should show), so errors become ``trial_adapter_store_up 0``.
    """

    def __init__(self, sessions: sessionmaker[Session], sites: list[str]) -> None:
        self.sessions = sessions
        self.sites = sites

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # computed at scrape time; no fixed description to check against

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(f"{PREFIX}_store_up", "1 when the state database answered this scrape.")
        try:
            with self.sessions() as session:
                families = list(self._families(session))
        except sa.exc.SQLAlchemyError as exc:
            log.warning("metrics: state database unreachable", extra={"error": type(exc).__name__})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self, session: Session) -> Iterator[GaugeMetricFamily]:
        issues = GaugeMetricFamily(
            f"{PREFIX}_open_issues", "Open mapping issues, by site and kind.", labels=["site", "kind"]
        )
        for site, kind, count in session.execute(
            sa.select(models.IssueRow.site, models.IssueRow.kind, sa.func.count())
            .where(models.IssueRow.status == "open")
            .group_by(models.IssueRow.site, models.IssueRow.kind)
        ):
            issues.add_metric([site, kind], count)
        yield issues

        held = GaugeMetricFamily(
            f"{PREFIX}_retractions_held",
            "Resources the source stopped listing whose retraction is held back for a person "
            "(trial-adapter accept-retraction), by site and resource type.",
            labels=["site", "resource_type"],
        )
        for site, resource_type, count in retraction_guard.held_counts(session):
            held.add_metric([site, resource_type], count)
        yield held

        pending = GaugeMetricFamily(
            f"{PREFIX}_outbox_pending", "Outbox items not yet delivered, by site.", labels=["site"]
        )
        by_site = dict(
            session.execute(
                sa.select(models.OutboxItem.site, sa.func.count())
                .where(models.OutboxItem.delivered_at.is_(None))
                .group_by(models.OutboxItem.site)
            ).all()
        )
        for site in sorted(set(self.sites) | set(by_site)):
            pending.add_metric([site], by_site.get(site, 0))
        yield pending

        oldest = counts.outbox_backlog(session).oldest
        age = GaugeMetricFamily(
            f"{PREFIX}_outbox_oldest_age_seconds", "Age of the oldest undelivered outbox item (0 when empty)."
        )
        age.add_metric([], max(time.time() - _epoch(oldest), 0.0) if oldest is not None else 0.0)
        yield age

        success = GaugeMetricFamily(
            f"{PREFIX}_last_success_timestamp_seconds",
            "Unix time the latest successful sync of a site finished.",
            labels=["site"],
        )
        for site, finished in session.execute(
            sa.select(models.SyncRun.site, sa.func.max(models.SyncRun.finished_at))
            .where(models.SyncRun.outcome == "ok")
            .group_by(models.SyncRun.site)
        ):
            if finished is not None:
                success.add_metric([site], _epoch(finished))
        yield success

        records = GaugeMetricFamily(
            f"{PREFIX}_records_current",
            "Current (not retracted) protocol records, by site and type.",
            labels=["site", "record_type"],
        )
        for site, record_type, count in session.execute(
            sa.select(models.RecordRow.site, models.RecordRow.record_type, sa.func.count())
            .where(models.RecordRow.retracted.is_(False))
            .group_by(models.RecordRow.site, models.RecordRow.record_type)
        ):
            records.add_metric([site, record_type], count)
        yield records


def _epoch(moment: dt.datetime) -> float:
    """A stored timestamp (always timezone-aware, see ``models.UTCDateTime``) as Unix time."""
    return moment.timestamp()


def exposition() -> tuple[bytes, str]:
    """The ``/metrics`` body and its content type."""
    return prometheus_client.generate_latest(
        prometheus_client.REGISTRY
    ), prometheus_client.CONTENT_TYPE_LATEST
