"""How often the mapping suggestions are right, on a corpus of local lab names.

    python -m bench.suggest_bench
    python -m bench.suggest_bench --corpus path/to/names.csv --mappings path/to/mapping-folder

The corpus (tests/data/local_lab_names.csv, assembled as
tests/data/local_lab_names.md describes) holds names as sites send them,
each with its unit and the concept it means, or none for names of ordinary
labs and vitals that are not protocol concepts.  Two questions are asked of
every row, the way the adapter asks them:

- ``suggest(display, unit)``, as a data manager sees it for a local code:
  is the first suggestion the right concept (top-1), is it among the first
  three (top-3), and does a non-protocol name get no suggestion at all;
- ``looks_like_protocol(display)`` without the unit, as the triage of
  unknown standard codes asks it: does a protocol name look like the
  protocol, and does a non-protocol name not.

Prints one JSON line of figures, every miss, and ``summary:`` lines that
``bench/__main__.py`` gathers; the goals are the quality floor that
tests/mapping/test_suggest.py enforces (90 %).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "local_lab_names.csv"
GOAL = 0.90  # top-1 on protocol names, no suggestion on the others


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def measure(corpus: Path, mappings: Path) -> dict[str, Any]:
    from adapter.mapping import catalog, suggest

    cat = catalog.load_catalog(mappings)
    synonyms = suggest.load_synonyms(mappings)
    with corpus.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    protocol = [row for row in rows if row["expected"]]
    others = [row for row in rows if not row["expected"]]
    top1 = top3 = looks = silent = not_looks = 0
    misses: list[dict[str, Any]] = []
    for row in rows:
        name, unit, expected = row["name"], row["unit"] or None, row["expected"]
        found = suggest.suggest(cat, synonyms, display=name, unit=unit)
        looked = suggest.looks_like_protocol(cat, synonyms, display=name)
        ranked = [s.concept for s in found]
        if expected:
            top1 += bool(ranked) and ranked[0] == expected
            top3 += expected in ranked
            looks += looked is not None
            right = bool(ranked) and ranked[0] == expected and looked is not None
        else:
            silent += not found
            not_looks += looked is None
            right = not found and looked is None
        if not right:
            misses.append(
                {
                    "name": name,
                    "unit": unit,
                    "expected": expected or None,
                    "suggested": [[s.concept, s.score] for s in found],
                    "looks_like": looked.concept if looked else None,
                }
            )
    started = time.perf_counter()  # a second pass, warm: the unit registry and caches are loaded
    for row in rows:
        suggest.suggest(cat, synonyms, display=row["name"], unit=row["unit"] or None)
    per_name_ms = 1000 * (time.perf_counter() - started) / len(rows)
    return {
        "rows": len(rows),
        "protocol_rows": len(protocol),
        "other_rows": len(others),
        "top1_pct": _percent(top1, len(protocol)),
        "top3_recall_pct": _percent(top3, len(protocol)),
        "no_suggestion_pct": _percent(silent, len(others)),
        "looks_like_protocol_pct": _percent(looks, len(protocol)),
        "not_looks_like_pct": _percent(not_looks, len(others)),
        "suggest_ms_per_name": round(per_name_ms, 3),
        "misses": misses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="CSV with name,unit,expected,source")
    parser.add_argument(
        "--mappings", type=Path, default=None, help="mapping folder (default: the bundled one)"
    )
    args = parser.parse_args()
    from adapter import paths

    result = measure(args.corpus, args.mappings or paths.default_mappings_dir())
    misses = result.pop("misses")
    print(json.dumps(result, ensure_ascii=False))
    for miss in misses:
        print(json.dumps({"miss": miss}, ensure_ascii=False))
    top1, silent = result["top1_pct"], result["no_suggestion_pct"]
    met = "met" if top1 >= 100 * GOAL and silent >= 100 * GOAL else "not met"
    print(
        f"summary: mapping suggestions on {result['rows']} local lab names: top-1 {top1} % of "
        f"{result['protocol_rows']} protocol names (top-3 {result['top3_recall_pct']} %), no suggestion for "
        f"{silent} % of {result['other_rows']} other names (goal >= {100 * GOAL:.0f} % each): {met}"
    )
    print(
        f"summary: triage of unknown standard codes by display (looks_like_protocol, no unit): "
        f"{result['looks_like_protocol_pct']} % of protocol names kept as issues, "
        f"{result['not_looks_like_pct']} % of other names outside the protocol"
    )


if __name__ == "__main__":
    main()
