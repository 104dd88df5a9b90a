"""Run every benchmark and write bench/results.md with the machine and date.

    python -m bench                  # the sizes the issues ask for (~25 min)
    python -m bench --size medium    # a tenth of that
    python -m bench --size quick     # only checks that the benches still run

Each benchmark is a module of this package runnable on its own; this runner
calls each in a subprocess (so memory figures are per benchmark), prints its
output as it goes, and records it verbatim in results.md beside the machine
description, so figures are never separated from where they were measured.
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

# module -> arguments per size: "full" is what the issues ask for (about 25
# minutes on 2 cores), "medium" fits a working session, "quick" only checks
# that the benches still run.
BENCHES = {
    "map_bench": {
        "full": ["--resources", "1000000"],
        "medium": ["--resources", "100000"],
        "quick": ["--resources", "5000"],
    },
    "sync_bench": {"full": [], "medium": ["--patients", "200", "--small", "50"], "quick": ["--quick"]},
    "delivery_bench": {
        "full": [],
        "medium": ["--records", "100000", "--fhir-records", "1000", "--repeats", "1"],
        "quick": ["--quick"],
    },
}


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
    sections = []
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
    header = (
        "# Benchmark results\n\n"
        f"Measured {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} on {machine()}"
        f" ({args.size} sizes).\n"
        "Regenerate with `python -m bench` (see bench/__main__.py); "
        "each section is the benchmark's own output.\n\n"
    )
    (HERE / "results.md").write_text(header + "\n".join(sections), encoding="utf-8")
    print(f"wrote {HERE / 'results.md'}")


if __name__ == "__main__":
    main()
