"""Ingest + map + derive throughput against the raw-parse ceiling, and peak memory.

    python -m bench.map_bench --resources 100000
    python -m bench.map_bench --resources 100000 --validation r4b   # full fhir.resources models

Generates demo site data of about the requested size (deterministic), then
measures, each in its own subprocess so peak RSS is per phase:

- ceiling: ``orjson.loads`` of every NDJSON line (nothing can be faster);
- validate: parse + validation with the models the sync uses
  (``--validation``: the lean models by default, see adapter/fhir/validation/);
- map: parse + validation + mapping to facts, in memory;
- derive: map+derive in memory: the map phase, then every subject's protocol
  records derived from its facts (``protocol.derive``), with no store, so
  the difference to ``pipeline`` is what the durable state costs;
- pipeline: the real job (SQLite state, derivation, outbox, file sink);
- pipeline_postgres: the same job with its state on a local PostgreSQL
  (``tests/pgserver.py``, started with PostgreSQL's durable defaults: fsync
  and synchronous commits on, as a site's database would run).

The in-memory phases run under the collector the sync runs under
(``adapter.sync.collector.sparing``), so the difference to ``pipeline`` is
the durable state, not a garbage-collection setting.

Goals (issue 18), each a share of the raw parse rate measured in the same
run: map+derive in memory >= 12 %; the whole sync with SQLite >= 5 %; on
PostgreSQL >= 4 %.

Prints one JSON line per phase and the ratios; ``bench/__main__.py`` collects
them into bench/results.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import zoneinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from adapter.fhir.validation import Mode

RESOURCES_PER_PATIENT = 150  # what the demo generator writes per patient, roughly
MAPPED_TYPES = ("Observation", "MedicationAdministration", "Procedure")  # sync.MAPPED_TYPES
# Issue 18: each phase's rate as a share of the raw orjson parse rate.
GOALS = {"derive": 0.12, "pipeline": 0.05, "pipeline_postgres": 0.04}


def _model_for(resource_type: str, validation: Mode) -> Any:
    """The model the sync validates with, without importing the sync (and SQLAlchemy) into the phase."""
    from adapter.fhir.validation import model_for

    return model_for(resource_type, validation)


def _sparing(phase: Any) -> Any:
    """``phase`` run under the sync's collector (``adapter.sync.collector.sparing``), imported late."""

    def spared(data: Path, validation: Mode) -> dict[str, Any]:
        from adapter.sync import collector

        return dict(collector.sparing(phase)(data, validation))

    spared.__doc__ = phase.__doc__
    return spared


def generate(folder: Path, resources: int) -> Path:
    from adapter.demo import generator

    patients = max(1, resources // (2 * RESOURCES_PER_PATIENT))
    generator.generate(folder, patients_per_site=patients, seed=11)
    return folder


def _lines(data: Path) -> list[Path]:
    return sorted(p for p in data.glob("*/*.ndjson"))


def phase_ceiling(data: Path, validation: Mode) -> dict[str, Any]:
    count = 0
    started = time.perf_counter()
    for path in _lines(data):
        with path.open("rb") as handle:
            for line in handle:
                orjson.loads(line)
                count += 1
    return {"resources": count, "seconds": time.perf_counter() - started}


@_sparing
def phase_validate(data: Path, validation: Mode) -> dict[str, Any]:
    from adapter.fhir import ndjson, source

    count = 0
    started = time.perf_counter()
    for site_dir in sorted(p for p in data.iterdir() if p.is_dir()):
        for resource_type in MAPPED_TYPES:
            validate = _model_for(resource_type, validation).model_validate
            for line in ndjson.read_resources(site_dir, resource_type):
                count += 1
                if isinstance(line, source.SourceLine):
                    validate(line.resource)
    return {"resources": count, "seconds": time.perf_counter() - started}


def _site_context(site_dir: Path) -> tuple[Any, Any]:
    """(engine.SiteContext, roster) for one demo site: what the sync loads before mapping."""
    from adapter import paths, roster
    from adapter.fhir import ndjson, source
    from adapter.mapping import catalog, engine

    cat = catalog.load_catalog(paths.default_mappings_dir(), site_dir.name)
    people = roster.load_roster(site_dir / "roster.csv")
    subjects = {}
    for line in ndjson.read_resources(site_dir, "Patient"):
        if isinstance(line, source.SourceLine):
            subject = people.subject_for_identifiers(roster.patient_identifiers(line.resource))
            if subject:
                subjects[f"Patient/{line.resource['id']}"] = subject
    return engine.SiteContext(site_dir.name, zoneinfo.ZoneInfo("UTC"), cat, subjects), people


def _mapped(site_dir: Path, ctx: Any, validation: Mode) -> Any:
    """One MappingResult per resource line of the site (None for a bad line)."""
    from adapter.fhir import ndjson, source
    from adapter.mapping import engine

    for resource_type in MAPPED_TYPES:
        model = _model_for(resource_type, validation)
        for line in ndjson.read_resources(site_dir, resource_type):
            if isinstance(line, source.SourceLine):
                yield engine.map_resource(model.model_validate(line.resource), "v:1", ctx)
            else:
                yield None


@_sparing
def phase_map(data: Path, validation: Mode) -> dict[str, Any]:
    count = facts = 0
    started = time.perf_counter()
    for site_dir in sorted(p for p in data.iterdir() if p.is_dir()):
        ctx, _ = _site_context(site_dir)
        for result in _mapped(site_dir, ctx, validation):
            count += 1
            facts += len(result.facts) if result is not None else 0
    return {"resources": count, "facts": facts, "seconds": time.perf_counter() - started}


@_sparing
def phase_derive(data: Path, validation: Mode) -> dict[str, Any]:
    """The map phase, then each subject's records derived from its facts, all in memory."""
    from adapter import paths
    from adapter.protocol import context, derive
    from adapter.protocol import rules as rules_mod

    count = facts = records = 0
    started = time.perf_counter()
    for site_dir in sorted(p for p in data.iterdir() if p.is_dir()):
        ctx, people = _site_context(site_dir)
        rules = rules_mod.load_rules(paths.default_mappings_dir(), site_dir.name)
        by_subject: dict[str, list[Any]] = {}
        for result in _mapped(site_dir, ctx, validation):
            count += 1
            for fact in result.facts if result is not None else ():
                by_subject.setdefault(fact.subject_id, []).append(fact)
                facts += 1
        for subject_id, subject_facts in sorted(by_subject.items()):
            entry = people.entry(subject_id)
            subject = context.SubjectContext(
                study=ctx.catalog.study,
                site=ctx.site,
                subject_id=subject_id,
                enrolment_date=entry.enrolment_date if entry else None,
                catalog_version=ctx.catalog.version,
            )
            records += len(derive.derive_subject(subject_facts, subject, rules).records)
    return {"resources": count, "facts": facts, "records": records, "seconds": time.perf_counter() - started}


def phase_pipeline(data: Path, validation: Mode, store_url: str | None = None) -> dict[str, Any]:
    """The whole job (``job.run_once``) on SQLite in a scratch folder, or on ``store_url``."""
    from adapter import config as config_mod
    from adapter import paths, privacy
    from adapter.service import job

    work = Path(tempfile.mkdtemp(prefix="bench-work-"))
    privacy.write_secret(work / "key")
    raw = {
        "study": {"mappings": str(paths.default_mappings_dir())},
        "store": {"url": store_url or f"sqlite:///{work / 'state.db'}"},
        "privacy": {"hmac_key_file": str(work / "key")},
        "sites": [
            {
                "id": d.name,
                "timezone": "UTC",
                "roster": str(d / "roster.csv"),
                "source": {"kind": "ndjson", "path": str(d)},
            }
            for d in sorted(p for p in data.iterdir() if p.is_dir())
        ],
        "repository": {"kind": "file", "path": str(work / "repo")},
    }
    config = config_mod.config_from_dict(raw, base_dir=work)
    started = time.perf_counter()
    result = job.run_once(config, config.sites, validation=validation)
    seconds = time.perf_counter() - started
    return {
        "resources": sum(s.resources_read for s in result.syncs),
        "facts": sum(s.facts_written for s in result.syncs),
        "records": result.delivery.delivered if result.delivery else 0,
        "issue_resources": sum(s.outcomes["issue"] for s in result.syncs),
        "seconds": seconds,
    }


def phase_pipeline_postgres(data: Path, validation: Mode) -> dict[str, Any]:
    """The whole job with its state on a local PostgreSQL server started for this phase."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import pgserver  # tests/pgserver.py: initdb + pg_ctl on a free port, stopped at exit

    return phase_pipeline(data, validation, pgserver.server(durable=True).new_database())


PHASES = {
    "ceiling": phase_ceiling,
    "validate": phase_validate,
    "map": phase_map,
    "derive": phase_derive,
    "pipeline": phase_pipeline,
    "pipeline_postgres": phase_pipeline_postgres,
}


def run_phase(name: str, data: Path, validation: str) -> dict[str, Any]:
    """One phase in a fresh interpreter, so its peak RSS is its own."""
    out = subprocess.run(
        [
            sys.executable,
            *("-m", "bench.map_bench", "--phase", name, "--data", str(data), "--validation", validation),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def measure(resources: int, validation: str = "lean") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        data = generate(Path(tmp), resources)
        results = {name: run_phase(name, data, validation) for name in PHASES}
    ceiling = results["ceiling"]["resources"] / results["ceiling"]["seconds"]
    for name, figures in results.items():
        figures["per_second"] = round(figures["resources"] / figures["seconds"])
        figures["ratio_to_ceiling"] = round(figures["per_second"] / ceiling, 4)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resources", type=int, default=100_000, help="approximate resources to generate")
    parser.add_argument(
        "--validation",
        choices=["lean", "r4b"],
        default="lean",
        help="models to validate with: lean (what the sync uses) or r4b (full fhir.resources)",
    )
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        figures = PHASES[args.phase](args.data, "r4b" if args.validation == "r4b" else "lean")
        figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(json.dumps(figures))
        return
    results = measure(args.resources, args.validation)
    print(json.dumps(results, indent=2))
    for line in summarize(results):
        print(line)


def summarize(results: dict[str, Any]) -> list[str]:
    """The verdict lines bench/__main__.py gathers: map+derive (in memory and durable) against the goal."""
    ceiling = results["ceiling"]["per_second"]
    lines = []
    for name, what in (
        ("derive", "map+derive in memory (parse, validate, map, derive)"),
        ("pipeline", "the whole sync (plus SQLite state, outbox, file sink)"),
        ("pipeline_postgres", "the whole sync on PostgreSQL (state on a local durable server)"),
    ):
        figures, goal = results[name], GOALS[name]
        verdict = "met" if figures["ratio_to_ceiling"] >= goal else "not met"
        lines.append(
            f"summary: {what}, {figures['resources']:,} resources: {figures['per_second']:,}/s, "
            f"{figures['ratio_to_ceiling']:.1%} of the raw orjson parse ({ceiling:,}/s; "
            f"goal {goal:.0%}): {verdict}"
        )
    return lines


if __name__ == "__main__":
    main()
