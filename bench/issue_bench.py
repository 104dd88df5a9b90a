"""What a resource that raises an issue costs, next to a clean one (issue 18).

    python -m bench.issue_bench --resources 20000

A site where one resource in five raises an issue must not cost more than
twice a clean site per resource.  The benchmark generates the demo data
(deterministic), copies it, and in the copy makes every fifth resource of
each mapped type raise an issue the way hospital data does: a measured
value far outside the plausible range (an issue of its own per resource),
or a site-local code nobody mapped (one issue per code, raised by many
resources).  Then the whole job (``map_bench``'s pipeline phase: SQLite
state, derivation, outbox, file sink) runs on both, alternately, each in
its own interpreter; the best of ``--rounds`` runs of each counts.

Prints one JSON line per run and the verdict line ``bench/__main__.py``
collects.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench import map_bench

EVERY = 5  # one resource in five raises an issue
GOAL = 2.0  # issue-heavy input costs at most 2x clean input per resource
LOCAL_CODES = 40  # the unmapped local codes the issue-heavy copy spreads over


def raise_issues(data: Path) -> int:
    """Make every ``EVERY``-th resource of each mapped type raise an issue; return how many."""
    changed = 0
    for path in sorted(data.glob("*/*.ndjson")):
        if path.stem not in map_bench.MAPPED_TYPES:
            continue
        lines = path.read_bytes().splitlines()
        for index in range(EVERY - 1, len(lines), EVERY):
            resource = orjson.loads(lines[index])
            _spoil(resource, index)
            lines[index] = orjson.dumps(resource)
            changed += 1
        path.write_bytes(b"\n".join(lines) + b"\n")
    return changed


def _spoil(resource: dict[str, Any], index: int) -> None:
    """An implausible value where there is a value, else a site-local code nobody mapped."""
    quantity = resource.get("valueQuantity")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
        quantity["value"] = 10_000_000
        return
    field = "medicationCodeableConcept" if "medicationCodeableConcept" in resource else "code"
    number = index % LOCAL_CODES
    resource[field] = {
        "coding": [
            {
                "system": f"http://{resource['resourceType'].lower()}.site-local.example/codes",
                "code": f"LOCAL-{number}",
                "display": f"local test {number}",
            }
        ]
    }


def measure(resources: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-issues-") as tmp:
        clean = map_bench.generate(Path(tmp) / "clean", resources)
        heavy = map_bench.generate(Path(tmp) / "heavy", resources)
        spoiled = raise_issues(heavy)
        runs: dict[str, list[dict[str, Any]]] = {"clean": [], "heavy": []}
        for _ in range(rounds):
            for name, data in (("clean", clean), ("heavy", heavy)):
                figures = map_bench.run_phase("pipeline", data, "lean")
                figures["input"] = name
                print(json.dumps(figures), flush=True)
                runs[name].append(figures)
    best = {name: min(figures, key=lambda f: f["seconds"]) for name, figures in runs.items()}
    per_resource = {name: figures["seconds"] / figures["resources"] * 1e6 for name, figures in best.items()}
    return {
        "spoiled": spoiled,
        "clean": best["clean"],
        "heavy": best["heavy"],
        "clean_us_per_resource": round(per_resource["clean"], 1),
        "heavy_us_per_resource": round(per_resource["heavy"], 1),
        "ratio": round(per_resource["heavy"] / per_resource["clean"], 2),
    }


def summarize(results: dict[str, Any]) -> list[str]:
    verdict = "met" if results["ratio"] <= GOAL else "not met"
    heavy = results["heavy"]
    return [
        f"summary: issue-heavy input (1 resource in {EVERY} raises an issue; "
        f"{heavy['issue_resources']:,} of {heavy['resources']:,}): "
        f"{results['heavy_us_per_resource']:,} µs per resource against "
        f"{results['clean_us_per_resource']:,} µs clean: {results['ratio']:.2f}x "
        f"(goal <= {GOAL:g}x): {verdict}"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resources", type=int, default=20_000, help="approximate resources to generate")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each input; the fastest counts")
    args = parser.parse_args()
    results = measure(args.resources, args.rounds)
    print(json.dumps(results, indent=2))
    for line in summarize(results):
        print(line)


if __name__ == "__main__":
    main()
