"""A Bulk Data sync from a real FHIR server: an incremental ``_since`` pass against a full one, and deletions.

    python -m bench.bulk_bench                  # 1,000 patients (about 14 minutes)
    python -m bench.bulk_bench --patients 100   # about 1 minute
    python -m bench.bulk_bench --quick          # 20 patients, to check it still runs

Generates demo-north with that many patients, loads it into a fresh local
sekmet FHIR server (``tests/fhirserver.py``) and measures, each phase in its
own subprocess (``sync_bench``'s pattern, whose helpers this reuses):

- bulk: a ``fhir-bulk`` sync (``Patient/$export``, read back like NDJSON)
  from an empty state, then 1 % of the resources changed at the server,
  spread over the patients (``sync_bench.change_resources``: sekmet ignores
  a client's ``meta.lastUpdated``, so changes go through the server), then
  one incremental pass in the same process: the export asks ``_since`` = the
  last export's ``transactionTime``, and must fetch exactly the changed
  resources.  Reported as a share of the full pass's time (issue 18's goal:
  <= 5 %), with the time spent waiting for the export (kick-off to files on
  disk) in each;
- deletions: a full REST sync into its own state (the REST source keeps
  watermarks of its own; reusing the Bulk state would make its first REST
  pass start from an export's clock), then k resources that feed records
  (0.1 % of those stored, at least 5, spread over the three types and the
  patients) DELETEd at the server, then ONE incremental pass of each source:
  REST from the types' ``_history`` (``adapter/fhir/history.py``), Bulk from
  the manifest's ``deleted`` files (``adapter/fhir/bulk_source.py``), with
  what each retired (``SyncSummary.vanished``) and retracted.  sekmet's
  manifest has no ``deleted`` (checked in the output, not assumed), so on
  Bulk a full sweep (``sync --full``) follows, the path such a server leaves.

Both phases set the overlaps (``adapter/sync/ingest.py``'s for searches and
history, ``bulk_source.OVERLAP`` for ``_since``) to zero, as sync_bench does:
the site was loaded minutes ago, so a five-minute overlap would bring it all
back.  sekmet's simulated export delay (a fixed 1 s pause "to let clients
observe in progress") is turned off: it is no work; the client's status
polls still honour the server's ``Retry-After: 1``.

Prints one JSON line per phase, then details, then ``summary:`` lines that
``python -m bench`` gathers.  Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import sync_bench
from bench.sync_bench import ROOT, SITE, config_for, peak_rss_mib

CHANGED = 0.01  # share of the resources changed at the server before the incremental pass
DELETED = 0.001  # share of the stored resources deleted at the server before the deletion passes
MIN_DELETED = 5
INCREMENTAL_GOAL = 5.0  # % of the full Bulk pass's time
SERVER_SETTINGS = {"validation": {"inbound": "off"}, "simulator": {"enabled": False, "delay_seconds": 0}}


def bulk_settings(base_url: str, work: Path) -> dict[str, Any]:
    """The Bulk source as a site without a Group sets it: ``Patient/$export``, files under ``work``."""
    return {"kind": "fhir-bulk", "base_url": base_url, "work_dir": str(work / "bulk")}


def open_site(work: Path, data: Path, base_url: str, bulk: bool) -> tuple[Any, Any]:
    """(setup, sessions) of the Bulk or the REST source's own state under ``work``."""
    from adapter import sync
    from adapter.store import db

    config = config_for(work, data, base_url, bulk_settings(base_url, work) if bulk else None)
    return sync.SiteSetup.load(config, config.sites[0]), db.open_store(config.store.url)


@contextlib.contextmanager
def recorded(owner: Any, name: str) -> Iterator[list[tuple[float, Any]]]:
    """Wrap ``owner.name`` for a while: (seconds, result) of every call, to read what a helper hides."""
    real = getattr(owner, name)
    calls: list[tuple[float, Any]] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = real(*args, **kwargs)
        calls.append((time.perf_counter() - started, result))
        return result

    setattr(owner, name, wrapper)
    try:
        yield calls
    finally:
        setattr(owner, name, real)


def no_overlaps() -> None:
    """Incremental passes from exactly the last watermark / export (``phase_bulk`` says why)."""
    from adapter.fhir import bulk_source
    from adapter.sync import ingest

    ingest.OVERLAP = dt.timedelta(0)
    bulk_source.OVERLAP = dt.timedelta(0)


def export_lines(work: Path, pattern: str) -> int:
    """Lines of the last export's downloaded files matching ``pattern`` (``Patient.*``, ``deleted.*``)."""
    folder = work / "bulk" / "download"
    paths = folder.glob(f"{pattern}.ndjson")
    return sum(sum(1 for line in path.open("rb") if line.strip()) for path in paths)


def timed_pass(setup: Any, sessions: Any, work: Path | None = None) -> dict[str, Any]:
    """``sync_bench.incremental_pass`` plus what it leaves out: deletions, retractions, export and derivation.

    With ``work`` (a Bulk pass), ``fetched`` counts the Patient lines the
    export held instead of the roster: a ``_since`` export lists only the
    patients that changed, where a REST pass reads every one.
    """
    from adapter import sync
    from adapter.fhir import bulk
    from adapter.sync import passes as sync_passes

    with (
        recorded(sync, "sync_site") as passes,
        recorded(bulk.BulkExport, "run") as exports,
        recorded(sync_passes, "derive_dirty") as derivations,
    ):
        result = sync_bench.incremental_pass(setup, sessions)
    summary = passes[-1][1]
    result.update(
        vanished=summary.vanished,
        retractions=summary.retractions,
        upserts=summary.upserts,
        held=dict(summary.held),
        export_seconds=round(sum(seconds for seconds, _ in exports), 2),
        derive_seconds=round(sum(seconds for seconds, _ in derivations), 2),
    )
    if work is not None:
        result["fetched"] = summary.resources_read - export_lines(work, "Patient.*")
        result["deleted_files_lines"] = export_lines(work, "deleted.*")
    return result


def full_pass(setup: Any, sessions: Any) -> dict[str, Any]:
    """A pass that reads everything (from an empty state, or ``sync --full``), timed."""
    from adapter import sync
    from adapter.fhir import bulk

    with recorded(bulk.BulkExport, "run") as exports:
        started = time.perf_counter()
        summary = sync.sync_site(setup, sessions, full=True)
        seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "export_seconds": round(sum(s for s, _ in exports), 2),
        "resources": summary.resources_read,
        "records": summary.upserts,
        "ehr_requests": summary.ehr_requests,
        "vanished": summary.vanished,
        "retractions": summary.retractions,
        "held": dict(summary.held),
    }


# ---------------------------------------------------------------- phases (subprocesses)


def phase_bulk(data: Path, base_url: str, work: Path, changed: float) -> dict[str, Any]:
    """A full Bulk pass from an empty state, then 1 % changed at the server, then one incremental pass.

    Both passes run in one process, as in the service, so the one-off
    warm-up of a first pass is not charged to the incremental one.
    """
    setup, sessions = open_site(work, data, base_url, bulk=True)
    full = full_pass(setup, sessions)
    full["peak_rss_mib"] = round(peak_rss_mib(), 1)
    no_overlaps()
    changes = sync_bench.change_resources(base_url, data, sessions, changed, clustered=False)
    incremental = timed_pass(setup, sessions, work)
    return {"phase": "bulk", "full": full, "changes": changes, "incremental": incremental}


def phase_deletions(data: Path, base_url: str, work: Path, rest_work: Path, share: float) -> dict[str, Any]:
    """A full REST sync into its own state, deletions at the server, one pass of each source, a Bulk sweep."""
    bulk_setup, bulk_sessions = open_site(work, data, base_url, bulk=True)
    rest_setup, rest_sessions = open_site(rest_work, data, base_url, bulk=False)
    rest_full = full_pass(rest_setup, rest_sessions)
    no_overlaps()
    deleted = delete_resources(base_url, rest_sessions, share)
    bulk = timed_pass(bulk_setup, bulk_sessions, work)
    rest = timed_pass(rest_setup, rest_sessions)
    sweep = full_pass(bulk_setup, bulk_sessions) if bulk["vanished"] < deleted["deleted"] else None
    return {
        "phase": "deletions",
        "rest_full": rest_full,
        "deleted": deleted,
        "bulk": bulk,
        "rest": rest,
        "bulk_sweep": sweep,
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


# ---------------------------------------------------------------- deletions at the server


def feeding_refs(sessions: Any) -> dict[str, list[str]]:
    """Per mapped type, the stored resources with facts of a subject that has a live record, by id."""
    import sqlalchemy as sa

    from adapter import sync
    from adapter.store import models

    with sessions() as session:
        live = set(
            session.scalars(
                sa.select(models.RecordRow.subject_id).where(
                    models.RecordRow.site == SITE, models.RecordRow.retracted.is_(False)
                )
            )
        )
        facts = session.execute(
            sa.select(models.FactRow.source_ref, models.FactRow.subject_id)
            .where(models.FactRow.site == SITE)
            .distinct()
        ).all()
    refs = {ref for ref, subject in facts if subject in live}
    return {t: sorted(r for r in refs if r.partition("/")[0] == t) for t in sync.MAPPED_TYPES}


def delete_resources(base_url: str, sessions: Any, share: float) -> dict[str, Any]:
    """HTTP DELETE ``share`` of the stored resources (at least 5) that feed records, spread over types.

    Ids are random, so every n-th by id spreads them over the patients.  Per
    type they stay far below the retraction guard's 5 % (at least 20
    patients' worth of each type is stored), so the guard holds none back.
    """
    import requests
    import sqlalchemy as sa

    from adapter.store import models

    with sessions() as session:
        stored = session.scalar(
            sa.select(sa.func.count())
            .select_from(models.SourceResource)
            .where(models.SourceResource.site == SITE, models.SourceResource.outcome != "deleted")
        )
    count = max(MIN_DELETED, round(share * int(stored or 0)))
    by_type = feeding_refs(sessions)
    chosen: list[str] = []
    for index, refs in enumerate(by_type.values()):
        wanted = count // len(by_type) + (index < count % len(by_type))
        chosen += refs[:: max(1, len(refs) // max(wanted, 1))][:wanted]
    with requests.Session() as http:
        for ref in chosen:
            response = http.delete(f"{base_url}/{ref}", timeout=60)
            if response.status_code not in (200, 204):
                raise RuntimeError(f"DELETE {ref}: {response.status_code}")
    return {
        "deleted": len(chosen),
        "stored": int(stored or 0),
        "by_type": {t: sum(r.startswith(f"{t}/") for r in chosen) for t in by_type},
    }


# ---------------------------------------------------------------- driver


def run_phase(*args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.bulk_bench", "--phase", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"phase {args[0]} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(patients: int, scratch: Path, changed: float, deleted: float) -> dict[str, Any]:
    """Load ``patients`` into a fresh server and run both phases against it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from adapter.demo import generator

    from fhirserver import FhirServer

    data = scratch / "data"
    generator.generate(data, patients_per_site=patients, seed=11)
    server = FhirServer(scratch / "server", extra_settings=SERVER_SETTINGS)
    server.start()
    try:
        started = time.perf_counter()
        loaded = server.load_ndjson(data / SITE)
        seconds = round(time.perf_counter() - started, 1)
        print(json.dumps({"patients": patients, "loaded": loaded, "load_seconds": seconds}), flush=True)
        work, rest_work = scratch / "work-bulk", scratch / "work-rest"
        result: dict[str, Any] = {"patients": patients}
        result["bulk"] = run_phase("bulk", str(data), server.base_url, str(work), str(changed))
        print(json.dumps(result["bulk"]), flush=True)
        args = (str(data), server.base_url, str(work), str(rest_work), str(deleted))
        result["deletions"] = run_phase("deletions", *args)
        print(json.dumps(result["deletions"]), flush=True)
    finally:
        server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=1000, help="roster patients loaded into the server")
    parser.add_argument("--quick", action="store_true", help="20 patients")
    parser.add_argument("--changed", type=float, default=CHANGED, help="share changed before the pass")
    parser.add_argument("--deleted", type=float, default=DELETED, help="share deleted (at least 5)")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, data, base_url, work, *rest = args.phase
        if name == "bulk":
            print(json.dumps(phase_bulk(Path(data), base_url, Path(work), float(rest[0]))))
        else:
            result = phase_deletions(Path(data), base_url, Path(work), Path(rest[0]), float(rest[1]))
            print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="bulk-bench-") as tmp:
        result = measure(20 if args.quick else args.patients, Path(tmp), args.changed, args.deleted)
    for line in summarize(result, args.changed):
        print(line)


def summarize(result: dict[str, Any], changed: float) -> list[str]:
    """Details first, then ``summary:`` lines (each figure against its goal) for bench/results.md."""
    lines, summary = [], []
    full, inc, changes = result["bulk"]["full"], result["bulk"]["incremental"], result["bulk"]["changes"]
    exact = inc["fetched"] == inc["remapped"] == changes["changed"]
    check = "exactly the changed resources" if exact else "NOT the changed set"
    base = max(full["seconds"], 1e-9)
    share, waiting, deriving = (100 * inc[k] / base for k in ("seconds", "export_seconds", "derive_seconds"))
    lines.append(
        f"full Bulk pass from an empty state: {full['seconds']} s ({full['export_seconds']} s waiting for "
        f"the export), {full['resources']} resources, {full['records']} records, "
        f"{full['ehr_requests']} EHR requests, peak RSS {full['peak_rss_mib']} MiB"
    )
    lines.append(
        f"incremental Bulk pass after {changes['changed']} resources changed at the server "
        f"({changes['by_type']}, {changes['patients']} patients): {inc['seconds']} s "
        f"({inc['export_seconds']} s waiting for the export), {inc['ehr_requests']} EHR requests, "
        f"{inc['fetched']} fetched and {inc['remapped']} re-mapped ({check}), "
        f"{inc['subjects_derived']} subjects re-derived, {inc['records_changed']} records changed"
    )
    summary.append(
        f"incremental Bulk pass (_since) with {100 * changed:g} % changed, {result['patients']:,} patients: "
        f"{share:.1f} % of a full Bulk pass ({inc['seconds']} s vs {full['seconds']} s; goal "
        f"<= {INCREMENTAL_GOAL:g} %): {'met' if share <= INCREMENTAL_GOAL and exact else 'not met'} "
        f"[waiting for sekmet's _since export: {waiting:.1f} %, re-deriving {inc['subjects_derived']} "
        f"subjects: {deriving:.1f} %, the rest of the adapter: {share - waiting - deriving:.1f} %]"
    )
    return lines + deletion_lines(result["deletions"], summary)


def deletion_lines(dels: dict[str, Any], summary: list[str]) -> list[str]:
    """The deletion phase's details, and its summary line appended to ``summary``; all lines returned."""
    k, rest, bulk, sweep = dels["deleted"]["deleted"], dels["rest"], dels["bulk"], dels["bulk_sweep"]
    lines = [
        f"full REST sync (its own state for the deletion passes): {dels['rest_full']['seconds']} s, "
        f"{dels['rest_full']['resources']} resources; deleted at the server: {k} of "
        f"{dels['deleted']['stored']} stored, {dels['deleted']['by_type']}, each feeding a subject's records"
    ]
    for name, one in (("REST (history)", rest), ("Bulk (_since export)", bulk)):
        lines.append(
            f"incremental {name} pass after the deletions: {one['seconds']} s, {one['ehr_requests']} EHR "
            f"requests, {one['vanished']} retired, held {one['held'] or 'none'}, {one['subjects_derived']} "
            f"subjects re-derived, {one['retractions']} records retracted, {one['upserts']} records updated"
        )
    listed = bulk["deleted_files_lines"] > 0
    swept = f"the full sweep (sync --full) retired {sweep['vanished']} of {k}" if sweep else ""
    if sweep is not None:
        lines.append(
            f"Bulk full sweep after the deletions: {sweep['seconds']} s ({sweep['export_seconds']} s waiting "
            f"for exports), {swept}, {sweep['retractions']} records retracted, held {sweep['held'] or 'none'}"
        )
    met = rest["vanished"] == k and rest["retractions"] + rest["upserts"] > 0
    met = met and (not listed or bulk["vanished"] == k)
    bulk_text = f"Bulk (export deleted files) {bulk['vanished']} of {k}"
    if not listed:  # what the server's manifest said, not assumed
        bulk_text += f" (sekmet's export manifest lists no `deleted` files; {swept})"
    summary.append(
        f"deletions between sweeps: {k} deleted at the server, retired in one incremental pass: REST "
        f"(history) {rest['vanished']} of {k}, {bulk_text}; records retracted in that pass: REST "
        f"{rest['retractions']} (and {rest['upserts']} updated), Bulk {bulk['retractions']}: "
        f"{'met' if met else 'not met'}{'' if listed else ' on REST, not measurable on Bulk against sekmet'}"
    )
    return lines + [f"summary: {line}" for line in summary]


if __name__ == "__main__":
    main()
