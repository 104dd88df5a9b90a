"""Run every benchmark and write bench/results.md with the machine and date.

    python -m bench                  # the sizes the issues ask for (~70 min on 2 cores)
    python -m bench --size medium    # about a tenth of that (~6 min)
    python -m bench --size quick     # only checks that the benches still run (~2 min)
    python -m bench --only sync_bench --only memory_bench

Each benchmark is a module of this package runnable on its own; this runner
calls each in a subprocess (so memory figures are per benchmark), prints its
output as it goes, and records it verbatim in results.md beside the machine
description, so figures are never separated from where they were measured.
Lines a benchmark prints as ``summary: ...`` (each figure as a ratio against
its ceiling or goal, and whether the goal is met) are also gathered at the
top of results.md, so the verdicts can be read without the details.

Where the ~70 minutes of the full sizes go (estimated from medium and quick
runs on 2 shared cores; the machine matters more than the estimate):

- map_bench, 1,000,000 resources: ~12 min (ten times its medium run);
- sync_bench, 1,000 and 100 patients through the local sekmet FHIR server:
  ~12 min, most of it loading the server (~3.5 min), two bare walks, the
  source walk and the full sync (~1.5 min each), and three incremental
  passes;
- bulk_bench, 1,000 patients through sekmet's Bulk export: ~14 min, most of
  it the full REST sync the deletion passes start from (~7 min), the Bulk
  full sweep (~2.5 min) and loading the server (~2 min); medium ~1 min;
- delivery_bench, 100,000 records to file and 5,000 to FHIR, best of 2:
  ~4 min;
- memory_bench, full syncs of 100, 1,000 and 10,000 patients from NDJSON:
  ~16 min, nearly all of it the 10,000-patient sync (~1.5 million
  resources at ~2,000/s, plus ~2 min to generate them);
- soak_bench, 1,000 passes of a 10-patient site in one process (~2.5 min)
  and the service at 3-second intervals for 5 minutes: ~8 min;
- suggest_bench, the mapping suggestions on the corpus of local lab names
  (tests/data/local_lab_names.csv): a few seconds, the same at every size;
- issue_bench, the whole job on 20,000 clean resources and on the same with
  one resource in five raising an issue, best of 2: ~1 min.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# module -> arguments per size: "full" is what the issues ask for, "medium" about
# a tenth of it, "quick" only checks that the benches still run.
BENCHES = {
    "map_bench": {
        "full": ["--resources", "1000000"],
        "medium": ["--resources", "100000"],
        "quick": ["--resources", "5000"],
    },
    "sync_bench": {"full": [], "medium": ["--patients", "100", "--small", "20"], "quick": ["--quick"]},
    "bulk_bench": {"full": [], "medium": ["--patients", "100"], "quick": ["--quick"]},
    "memory_bench": {
        "full": [],
        "medium": ["--patients", "10", "100", "1000"],
        "quick": ["--quick"],
    },
    "delivery_bench": {
        "full": [],
        "medium": ["--records", "100000", "--fhir-records", "1000", "--repeats", "1"],
        "quick": ["--quick"],
    },
    "soak_bench": {
        "full": [],
        "medium": ["--passes", "300", "--service-minutes", "2"],
        "quick": ["--quick"],
    },
    "suggest_bench": {"full": [], "medium": [], "quick": []},
    "issue_bench": {
        "full": [],
        "medium": ["--rounds", "1"],
        "quick": ["--resources", "5000", "--rounds", "1"],
    },
}
SUMMARY = "summary: "  # a benchmark's verdict lines, gathered at the top of results.md


def machine() -> str:
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return f"{platform.machine()}, {os.cpu_count()} cores{memory}, {system}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=("full", "medium", "quick"), default="full", help="problem sizes")
    parser.add_argument("--only", action="append", help="run only this benchmark module (repeatable)")
    args = parser.parse_args()
    sections: list[str] = []
    verdicts: list[str] = []
    for module, sizes in BENCHES.items():
        if args.only and module not in args.only:
            continue
        if not (HERE / f"{module}.py").exists():
            continue
        command = [sys.executable, "-m", f"bench.{module}", *sizes[args.size]]
        print(f"== {' '.join(command[1:])}", flush=True)
        result = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent, check=False)
        output = (
            result.stdout
            + (f"\n[exit {result.returncode}]\n{result.stderr[-2000:]}" if result.returncode else "")
        ).strip()
        print(output, flush=True)
        sections.append(f"## {module} ({' '.join(command[3:]) or 'defaults'})\n\n```\n{output}\n```\n")
        verdicts += [
            f"- {line.removeprefix(SUMMARY)}" for line in output.splitlines() if line.startswith(SUMMARY)
        ]
        if result.returncode:
            verdicts.append(f"- {module}: failed (exit {result.returncode}), see its section")
    header = (
        "# Benchmark results\n\n"
        f"Measured {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} on {machine()}"
        f" ({args.size} sizes).\n"
        "Regenerate with `python -m bench` (see bench/__main__.py); "
        "each section is the benchmark's own output.\n\n"
    )
    if verdicts:
        header += "## Summary\n\n" + "\n".join(verdicts) + "\n\n"
    (HERE / "results.md").write_text(header + "\n".join(sections), encoding="utf-8")
    print(f"wrote {HERE / 'results.md'}")


if __name__ == "__main__":
    main()
