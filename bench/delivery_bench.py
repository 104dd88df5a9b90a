"""Delivery throughput: outbox -> sink, against writing the same payloads directly (the ceiling).

    python -m bench.delivery_bench                      # 100,000 records to file, 5,000 to FHIR
    python -m bench.delivery_bench --quick              # 5,000 to file, 500 to FHIR
    python -m bench.delivery_bench --records 20000 --fhir-records 0   # no FHIR server

Records are the demo's real (pseudonymized) protocol records, cloned under
new subject and record ids, enqueued through ``records.reconcile_records``
exactly as a sync does.  Measured, each from a fresh state:

- file ceiling: the same payloads written straight to one NDJSON file per
  record type (orjson, fsync), nothing else;
- file sink: ``outbox.drain`` into the file sink (outbox reads, per-batch
  atomic rewrites and fsyncs, acknowledgements);
- FHIR ceiling: the same records as ready-made transaction Bundles POSTed
  straight to a local sekmet-fhir server (tests/fhirserver.py);
- FHIR sink: ``outbox.drain`` into the fhir sink against a second, empty
  server of the same kind.

The FHIR runs use fewer records (5,000 by default) because the local test
server (Python, SQLite, one process) is the bottleneck, not the adapter; the
ratio is the figure that carries over to a real server.  Each figure is the
best of ``--repeats`` runs (the same backlog drained again, fresh servers).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import requests
import sqlalchemy as sa

from adapter.delivery import outbox
from adapter.protocol.records import record_id
from adapter.sinks import settings
from adapter.sinks.base import Delivery
from adapter.sinks.fhir import FHIR_JSON, FhirSink
from adapter.sinks.file import FileSink
from adapter.store import db, models, records

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "demo" / "expected"


def templates() -> dict[str, list[dict[str, Any]]]:
    """The demo's records per subject: one realistic subject history to clone."""
    by_subject: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(GOLDEN.glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            record = orjson.loads(line)
            by_subject[record["subject_id"]].append(record)
    return dict(by_subject)


def synthetic_subjects(count: int) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
    """(subject id, {record id: payload}) until ``count`` records, cycling through the demo subjects."""
    histories = list(templates().values())
    made = n = 0
    while made < count:
        history = histories[n % len(histories)][: count - made]
        subject = f"BENCH-{n:06d}"
        payloads = {}
        for record in history:
            natural = f"{record['record_id']}|{n}"
            rid = record_id(record["study"], subject, record["record_type"], natural)
            payloads[rid] = {**record, "record_id": rid, "subject_id": subject}
        yield subject, payloads
        made += len(payloads)
        n += 1


def enqueue(url: str, count: int) -> tuple[Any, float]:
    sessions = db.open_store(url)
    started = time.perf_counter()
    pending: list[tuple[str, dict[str, dict[str, Any]]]] = []
    for subject in synthetic_subjects(count):
        pending.append(subject)
        if len(pending) == 500:
            _enqueue_many(sessions, pending)
            pending = []
    _enqueue_many(sessions, pending)
    return sessions, time.perf_counter() - started


def _enqueue_many(sessions: Any, subjects: list[tuple[str, dict[str, dict[str, Any]]]]) -> None:
    with sessions.begin() as session:
        for subject_id, payloads in subjects:
            records.reconcile_records(session, "bench", subject_id, payloads)


def file_ceiling(folder: Path, count: int) -> float:
    """The same payloads, one NDJSON file per type, written once: nothing can be faster."""
    by_type: dict[str, list[bytes]] = defaultdict(list)
    payloads = [p for _, subject in synthetic_subjects(count) for p in subject.values()]
    started = time.perf_counter()
    for payload in payloads:
        by_type[payload["record_type"]].append(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))
    folder.mkdir(parents=True)
    for record_type, lines in by_type.items():
        with (folder / f"{record_type}.ndjson").open("wb") as handle:
            handle.write(b"\n".join(lines) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
    return time.perf_counter() - started


def drained(sessions: Any, sink: Any) -> tuple[int, float]:
    started = time.perf_counter()
    summary = outbox.drain(sessions, sink)
    seconds = time.perf_counter() - started
    if summary.failed or summary.stopped:
        raise SystemExit(f"delivery failed: {summary}")
    return summary.delivered, seconds


def fhir_ceiling(base_url: str, count: int) -> float:
    """Ready-made Bundles of the same resources, POSTed straight to the server."""
    sink = FhirSink(settings.FhirRepository(kind="fhir", url=base_url))
    batch = [
        Delivery(
            item_id=i,
            record_id=rid,
            record_type=payload["record_type"],
            subject_id=subject,
            operation="upsert",
            payload=payload,
            enqueued_at=dt.datetime.now(dt.UTC),
        )
        for i, (subject, rid, payload) in enumerate(
            (s, r, p) for s, payloads in synthetic_subjects(count) for r, p in payloads.items()
        )
    ]
    changes, _ = sink.subject_changes(batch)
    bodies = [orjson.dumps(sink.transaction(bundle)) for bundle in sink.bundles(changes)]
    session = requests.Session()
    started = time.perf_counter()
    for body in bodies:
        response = session.post(base_url, data=body, headers={"Content-Type": FHIR_JSON}, timeout=600)
        response.raise_for_status()
    return time.perf_counter() - started


def fhir_server_class() -> Any:
    """tests/fhirserver.py's FhirServer (installs sekmet-fhir in its own venv on first use), or None."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from fhirserver import FhirServer  # type: ignore[import-not-found]
    except ImportError:
        return None
    return FhirServer


def undeliver(sessions: Any) -> None:
    """Every outbox item pending again, so the same backlog can be drained once more."""
    with sessions.begin() as session:
        session.execute(
            sa.update(models.OutboxItem).values(
                delivered_at=None, attempts=0, next_attempt_at=None, last_error=None
            )
        )


def measure(records: int, fhir_records: int, repeats: int) -> dict[str, Any]:
    """Each figure is the best of ``repeats`` runs: a shared machine only ever makes things slower."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        work = Path(tmp)
        sessions, enqueue_seconds = enqueue(f"sqlite:///{work / 'state.db'}", records)
        results["enqueue"] = {"records": records, "seconds": enqueue_seconds}
        ceiling, sink_seconds = [], []
        for run in range(repeats):
            ceiling.append(file_ceiling(work / f"direct-{run}", records))
            undeliver(sessions)
            delivered, seconds = drained(sessions, FileSink(work / f"repository-{run}"))
            assert delivered == records
            sink_seconds.append(seconds)
        results["file_ceiling"] = {"records": records, "seconds": min(ceiling)}
        results["file_sink"] = {"records": records, "seconds": min(sink_seconds)}

        server_class = fhir_server_class() if fhir_records else None
        if server_class is not None:
            fhir_sessions, _ = enqueue(f"sqlite:///{work / 'fhir-state.db'}", fhir_records)
            ceiling, sink_seconds = [], []
            for run in range(repeats):
                ceiling_server = server_class(work / f"fhir-ceiling-{run}").start()
                sink_server = server_class(work / f"fhir-sink-{run}").start()
                try:
                    ceiling.append(fhir_ceiling(ceiling_server.base_url, fhir_records))
                    undeliver(fhir_sessions)
                    repository = settings.FhirRepository(
                        kind="fhir", url=sink_server.base_url, timeout_seconds=600
                    )
                    delivered, seconds = drained(fhir_sessions, FhirSink(repository))
                    assert delivered == fhir_records
                    sink_seconds.append(seconds)
                finally:
                    ceiling_server.stop()
                    sink_server.stop()
            results["fhir_ceiling"] = {"records": fhir_records, "seconds": min(ceiling)}
            results["fhir_sink"] = {"records": fhir_records, "seconds": min(sink_seconds)}
    for figures in results.values():
        figures["per_second"] = round(figures["records"] / figures["seconds"])
    for sink_name in ("file", "fhir"):
        if f"{sink_name}_sink" in results:
            ratio = results[f"{sink_name}_sink"]["per_second"] / results[f"{sink_name}_ceiling"]["per_second"]
            results[f"{sink_name}_sink"]["ratio_to_ceiling"] = round(ratio, 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000, help="records to the file sink")
    parser.add_argument("--fhir-records", type=int, default=5_000, help="records to the FHIR sink (0: skip)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per figure; the best counts")
    parser.add_argument("--quick", action="store_true", help="5,000 file and 500 FHIR records, one run")
    args = parser.parse_args()
    if args.quick:
        args.records, args.fhir_records, args.repeats = 5_000, 500, 1
    results = measure(args.records, args.fhir_records, args.repeats)
    print(json.dumps(results, indent=2))
    for name, figures in results.items():
        ratio = (
            f"  ({figures['ratio_to_ceiling']:.1%} of the ceiling)" if "ratio_to_ceiling" in figures else ""
        )
        records, seconds, rate = figures["records"], figures["seconds"], figures["per_second"]
        print(f"{name:13} {records:>7} records  {seconds:8.2f} s  {rate:>7}/s{ratio}")
    for sink_name, ceiling in (
        ("file", "writing the same NDJSON lines directly"),
        ("fhir", "posting the same transaction Bundles directly"),
    ):
        figures = results.get(f"{sink_name}_sink")
        if figures is not None:
            print(
                f"summary: delivery to the {sink_name} sink, {figures['records']:,} records: "
                f"{figures['per_second']:,}/s, {figures['ratio_to_ceiling']:.1%} of {ceiling} "
                "(no numeric goal set)"
            )


if __name__ == "__main__":
    main()
