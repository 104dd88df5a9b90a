"""Peak memory of a full sync at 100, 1,000 and 10,000 patients: it should stay flat.

    python -m bench.memory_bench                         # 100, 1,000, 10,000 patients (~16 min)
    python -m bench.memory_bench --patients 10 100       # any series
    python -m bench.memory_bench --quick                 # 5, 20, 50 patients, to check it still runs

The issue asks that peak RSS stay within 20 % from 100 to 10,000 patients,
i.e. that nothing in the pipeline grows with the site.  The sync runs here
from the NDJSON folder source (``adapter/fhir/ndjson.py``), not from the
local sekmet FHIR server that ``sync_bench`` uses: loading 10,000 patients
(1.5 million resources) into sekmet takes about half an hour and its search
sync another forty minutes, while the folder source feeds the very same
``sync.sync_site`` pipeline (parse, map, derive, SQLite state, outbox) in a
fraction of that.  What differs is only the HTTP side, whose memory is
bounded by one Bundle page per search and is measured by ``sync_bench``.

For each size it writes demo-north with that many roster patients
(``adapter.demo.generator``; only the one site, which halves the generator's
time and disk at 10,000 patients), then runs ``sync_site`` from an empty
SQLite state in its own subprocess, so the peak RSS is that run's alone
(``VmHWM``; see ``sync_bench.peak_rss_mib``).  The data of a size is deleted
before the next is written (10,000 patients are about 1 GB of NDJSON plus a
state database of a few GB).

Prints one JSON line per size, then the series and its max/min ratio.  Not a
test: timings and memory depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.sync_bench import SITE, config_for, peak_rss_mib

ROOT = Path(__file__).resolve().parents[1]
SIZES = (100, 1000, 10000)
QUICK_SIZES = (5, 20, 50)
GOAL = 1.20  # max/min peak RSS across the series


def generate_site(folder: Path, patients: int, seed: int = 11) -> dict[str, int]:
    """Write only ``SITE`` with ``patients`` roster patients; return its resource counts.

    ``generator.generate`` writes both demo sites; at 10,000 patients the
    second would cost another ~100 s and 1 GB for nothing measured here.
    """
    from adapter.demo import generator

    profile = next(site for site in generator.SITES if site.name == SITE)
    rng = random.Random(seed)  # synthetic data, not security
    output = generator.generate_site(profile, folder / SITE, patients, rng, [])
    return dict(output.counts)


def phase_sync(data: Path, work: Path) -> dict[str, Any]:
    """One full sync from an empty state, from the NDJSON folder: what it did, how long, how much memory."""
    from adapter import sync
    from adapter.store import db

    config = config_for(work, data, "", source={"kind": "ndjson", "path": str(data / SITE)})
    setup = sync.SiteSetup.load(config, config.sites[0])
    sessions = db.open_store(config.store.url)
    started = time.perf_counter()
    summary = sync.sync_site(setup, sessions)
    seconds = time.perf_counter() - started
    return {
        "patients": len(setup.roster.entries),
        "source": "ndjson",
        "resources": summary.resources_read,
        "facts": summary.facts_written,
        "records": summary.upserts,
        "seconds": round(seconds, 2),
        "per_second": round(summary.resources_read / max(seconds, 1e-9)),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def measure(patients: int, scratch: Path) -> dict[str, Any]:
    data, work = scratch / f"data-{patients}", scratch / f"work-{patients}"
    started = time.perf_counter()
    counts = generate_site(data, patients)
    generate_seconds = round(time.perf_counter() - started, 1)
    try:
        command = [sys.executable, "-m", "bench.memory_bench", "--phase", str(data), str(work)]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
        result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    result["generated"] = sum(counts.values())
    result["generate_seconds"] = generate_seconds
    return result


def summarize(results: list[dict[str, Any]]) -> list[str]:
    """The series and whether it stays flat (max/min within ``GOAL``)."""
    peaks = [r["peak_rss_mib"] for r in results]
    ratio = max(peaks) / max(min(peaks), 1e-9)
    series = ", ".join(f"{r['peak_rss_mib']} MiB at {r['patients']:,}" for r in results)
    verdict = "met" if ratio <= GOAL else "not met"
    return [
        f"summary: peak RSS of a full sync (NDJSON folder source, sync_site): {series} patients; "
        f"max/min {ratio:.2f}x (goal: flat within 20 %, <= {GOAL:.2f}x): {verdict}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, nargs="+", default=list(SIZES), help="roster sizes")
    parser.add_argument("--quick", action="store_true", help=f"{', '.join(map(str, QUICK_SIZES))} patients")
    parser.add_argument("--phase", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase_sync(Path(args.phase[0]), Path(args.phase[1]))))
        return
    sizes = QUICK_SIZES if args.quick else tuple(args.patients)
    results = []
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as tmp:
        for patients in sizes:
            results.append(measure(patients, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
    for line in summarize(results):
        print(line)


if __name__ == "__main__":
    main()
