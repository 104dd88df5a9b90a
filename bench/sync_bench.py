"""A full sync from a real FHIR server against a bare requests + json walk of the same pages.

    python -m bench.sync_bench                  # 1,000 and 100 patients (about 15 minutes)
    python -m bench.sync_bench --quick          # 20 and 5 patients, to check it still runs
    python -m bench.sync_bench --sync-only      # only the syncs (memory at both sizes)

For each size it generates demo-north with that many patients
(``adapter.demo.generator``), starts a local sekmet FHIR server
(``tests/fhirserver.py``), loads the site, and measures, each phase in its
own subprocess so peak RSS is per phase:

- bare: ``requests`` + ``json`` walking exactly the searches the REST source
  runs (identifier searches, then per type and patient batch, following
  ``next``), doing nothing with the resources: the ceiling;
- source: the REST source alone (``patients()`` and ``pages()`` of every
  type, checked and turned into pages) with nothing downstream: what the
  adapter's HTTP side costs over the bare walk;
- sync: ``adapter.sync.sync_site`` (fetch, parse, map, derive, SQLite state,
  outbox) from an empty state;
- bare again, after the sync: the server's speed drifts (SQLite caches, other
  load on the machine), so the faster of the two bare walks is the ceiling;
- again: a second, incremental pass with no changes (the sync's overlap set
  to zero, since the data was loaded seconds before): how many searches it
  issues (the aim: one per resource type and patient batch, plus the
  identifier searches) and whether it writes anything.

Prints one JSON line per phase, then the ratio sync / bare and the RSS at each
size.  Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SITE = "demo-north"
BATCH = 20
PAGE = 500


def source_settings(base_url: str) -> dict[str, Any]:
    return {"kind": "fhir-rest", "base_url": base_url, "patient_batch_size": BATCH, "page_size": PAGE}


def config_for(work: Path, data: Path, base_url: str) -> Any:
    from adapter import config as config_mod
    from adapter import paths

    work.mkdir(parents=True, exist_ok=True)
    (work / "site-secret.key").write_text("bench-only-secret-0123456789abcdef\n")
    raw = {
        "study": {"mappings": str(paths.default_mappings_dir())},
        "store": {"url": f"sqlite:///{work / 'state.db'}"},
        "privacy": {"hmac_key_file": str(work / "site-secret.key")},
        "sites": [
            {
                "id": SITE,
                "timezone": "America/Chicago",
                "roster": str(data / SITE / "roster.csv"),
                "source": source_settings(base_url),
            }
        ],
        "repository": {"kind": "file", "path": str(work / "repository")},
    }
    return config_mod.config_from_dict(raw, base_dir=work)


def peak_rss_mib() -> float:
    """This process's peak resident memory.

    ``VmHWM`` belongs to the process image, which ``exec`` replaces; ``ru_maxrss``
    survives ``exec`` and would report the (large) parent that loaded the server.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---------------------------------------------------------------- phases (subprocesses)


def phase_bare(data: Path, base_url: str) -> dict[str, Any]:
    """The same searches with nothing but requests + json: the speed limit of the server and the wire."""
    import requests

    from adapter import roster as roster_mod
    from adapter.fhir import rest

    config = config_for(Path(tempfile.mkdtemp()), data, base_url)
    source = rest.RestSearchSource(SITE, config.sites[0].source, roster_path=config.sites[0].roster)
    session = requests.Session()
    headers = {"Accept": "application/fhir+json"}
    pages = resources = 0
    started = time.perf_counter()

    def walk(url: str, params: dict[str, str] | None) -> list[dict[str, Any]]:
        nonlocal pages, resources
        found = []
        while url:
            body = json.loads(session.get(url, params=params, headers=headers, timeout=120).content)
            pages += 1
            entries = [e["resource"] for e in body.get("entry", [])]
            resources += len(entries)
            found += entries
            url = next((link["url"] for link in body.get("link", []) if link["relation"] == "next"), "")
            params = None
        return found

    entries = roster_mod.load_roster(config.sites[0].roster).entries
    patients = []
    for start in range(0, len(entries), BATCH):
        batch = entries[start : start + BATCH]
        tokens = ",".join(f"{e.identifier_system}|{e.identifier_value}" for e in batch)
        patients += walk(f"{base_url}/Patient", {"identifier": tokens, "_count": str(PAGE)})
    ids = [p["id"] for p in patients]
    for resource_type in ("Observation", "MedicationAdministration", "Procedure"):
        for query in source.plan(resource_type, ids, None):
            walk(f"{base_url}/{resource_type}", dict(query.params))
    seconds = time.perf_counter() - started
    return {
        "phase": "bare",
        "pages": pages,
        "resources": resources,
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def phase_source(data: Path, base_url: str) -> dict[str, Any]:
    """The REST source with nothing downstream: its cost over the bare walk."""
    from adapter.fhir import rest

    config = config_for(Path(tempfile.mkdtemp()), data, base_url)
    source = rest.RestSearchSource(SITE, config.sites[0].source, roster_path=config.sites[0].roster)
    started = time.perf_counter()
    refs = sorted(f"Patient/{line.resource['id']}" for line in source.patients() if hasattr(line, "resource"))
    pages = resources = 0
    for resource_type in ("Observation", "MedicationAdministration", "Procedure"):
        for page in source.pages(resource_type, patient_refs=refs, since=None, resume=None):
            pages += 1
            resources += len(page.lines)
    seconds = time.perf_counter() - started
    return {
        "phase": "source",
        "pages": pages,
        "resources": resources + len(refs),
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def phase_sync(data: Path, base_url: str, work: Path) -> dict[str, Any]:
    """A full sync from an empty state, then a second pass that finds nothing new."""
    import sqlalchemy as sa

    from adapter import sync
    from adapter.fhir import factory
    from adapter.store import db, models

    config = config_for(work, data, base_url)
    setup = sync.SiteSetup.load(config, config.sites[0])
    sessions = db.open_store(config.store.url)
    started = time.perf_counter()
    first = sync.sync_site(setup, sessions)
    seconds = time.perf_counter() - started
    result = {
        "phase": "sync",
        "resources": first.resources_read,
        "facts": first.facts_written,
        "records": first.upserts,
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }

    source = factory.make_source(config.sites[0])
    searches: list[str] = []
    source.client.session.hooks["response"].append(lambda r, *a, **k: searches.append(r.url))  # type: ignore[attr-defined]
    with sessions() as session:
        outbox = session.scalar(sa.select(sa.func.count()).select_from(models.OutboxItem))
    sync.OVERLAP = dt.timedelta(0)  # the data is seconds old: the default overlap would return it all
    again = sync.sync_site(setup, sessions, source=source)
    with sessions() as session:
        outbox_after = session.scalar(sa.select(sa.func.count()).select_from(models.OutboxItem))
    patients = len(setup.roster.entries)
    batches = -(-patients // BATCH)
    result["again"] = {
        "searches": len(searches),
        "expected": batches + 3 * batches,  # identifier searches + one per (type, batch)
        "pages_beyond_first": len(searches) - 4 * batches,
        "resources_returned": again.resources_read - patients,
        "remapped": again.resources_mapped,
        "records_changed": again.upserts + again.retractions,
        "outbox_added": int(outbox_after or 0) - int(outbox or 0),
    }
    return result


# ---------------------------------------------------------------- driver


def run_phase(*args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.sync_bench", "--phase", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(patients: int, scratch: Path, ceiling: bool = True) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from adapter.demo import generator

    from fhirserver import FhirServer

    data = scratch / f"data-{patients}"
    generator.generate(data, patients_per_site=patients, seed=11)
    server = FhirServer(scratch / f"server-{patients}", extra_settings={"validation": {"inbound": "off"}})
    server.start()
    try:
        started = time.perf_counter()
        loaded = server.load_ndjson(data / SITE)
        print(
            json.dumps(
                {
                    "patients": patients,
                    "loaded": loaded,
                    "load_seconds": round(time.perf_counter() - started, 1),
                }
            ),
            flush=True,
        )
        result: dict[str, Any] = {"patients": patients}
        if ceiling:
            result["bare"] = run_phase("bare", str(data), server.base_url)
            print(json.dumps(result["bare"]), flush=True)
            result["source"] = run_phase("source", str(data), server.base_url)
            print(json.dumps(result["source"]), flush=True)
        result["sync"] = run_phase("sync", str(data), server.base_url, str(scratch / f"work-{patients}"))
        print(json.dumps(result["sync"]), flush=True)
        if ceiling:  # the bare walk again, after: the server's speed drifts; take the faster of the two
            again = run_phase("bare", str(data), server.base_url)
            print(json.dumps(again), flush=True)
            result["bare"]["seconds"] = min(result["bare"]["seconds"], again["seconds"])
    finally:
        server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=1000, help="roster patients of the large run")
    parser.add_argument("--small", type=int, default=100, help="roster patients of the small run (memory)")
    parser.add_argument("--quick", action="store_true", help="20 and 5 patients")
    parser.add_argument(
        "--sync-only", action="store_true", help="skip the bare and source walks (memory figures only)"
    )
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, *rest = args.phase
        if name == "bare":
            print(json.dumps(phase_bare(Path(rest[0]), rest[1])))
        elif name == "source":
            print(json.dumps(phase_source(Path(rest[0]), rest[1])))
        else:
            print(json.dumps(phase_sync(Path(rest[0]), rest[1], Path(rest[2]))))
        return
    large, small = (20, 5) if args.quick else (args.patients, args.small)
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
        big = measure(large, Path(tmp), ceiling=not args.sync_only)
        little = measure(small, Path(tmp), ceiling=False)
    if "bare" in big:
        ratio = big["sync"]["seconds"] / max(big["bare"]["seconds"], 1e-9)
        source_ratio = big["source"]["seconds"] / max(big["bare"]["seconds"], 1e-9)
        print(
            f"full sync / bare requests+json page walk at {big['patients']} patients: {ratio:.2f}x "
            f"({big['sync']['seconds']} s vs {big['bare']['seconds']} s, {big['bare']['pages']} pages)"
        )
        print(
            f"REST source alone (fetch, check, page; nothing downstream) / bare walk: {source_ratio:.2f}x "
            f"({big['source']['seconds']} s)"
        )
    print(
        f"peak RSS of the sync: {little['sync']['peak_rss_mib']} MiB at {little['patients']} patients, "
        f"{big['sync']['peak_rss_mib']} MiB at {big['patients']} patients"
    )
    again = big["sync"]["again"]
    print(
        f"incremental pass without changes: {again['searches']} searches "
        f"(one per type and batch plus identifier searches: {again['expected']}), "
        f"{again['remapped']} re-mapped, {again['records_changed']} records changed, "
        f"{again['outbox_added']} outbox items"
    )


if __name__ == "__main__":
    main()
