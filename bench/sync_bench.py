"""A sync from a real FHIR server: full against a bare requests + json walk, incremental against full.

    python -m bench.sync_bench                  # 1,000 and 100 patients (about 12 minutes)
    python -m bench.sync_bench --quick          # 20 and 5 patients, to check it still runs
    python -m bench.sync_bench --sync-only      # only the syncs (no bare or source walks)
    python -m bench.sync_bench --changed 0.05   # 5 % changed before the incremental passes

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
  outbox) from an empty state, then, in the same process, incremental passes
  from the stored watermarks (``phase_sync`` says why the overlap is zero):

  - again: nothing changed: how many searches it issues (the aim: one per
    resource type and patient batch, plus the identifier searches), how long
    they take (the floor of any incremental pass: the server must answer
    every search, changed or not), and that it writes nothing;
  - clustered: after every resource of 1 % of the patients changed at the
    server (a corrected value, PUT through the server, since sekmet ignores a
    client's ``meta.lastUpdated``);
  - spread: after 1 % of the resources changed, spread evenly over the
    patients: the issue's "incremental sync with 1 % changed", reported as a
    share of the full sync's time (goal: under 5 %), with how many resources
    it fetched and re-mapped (they must be exactly the changed ones) and how
    many subjects, records and outbox items changed;

- bare again, after the sync: the server's speed drifts (SQLite caches, other
  load on the machine), so the faster of the two bare walks is the ceiling.

Only the large size runs the walks and the changes; the small one (100
patients) gives the REST sync's memory at a second size.  The memory series
the issue asks for (100 / 1,000 / 10,000 patients) is ``memory_bench``'s,
from the NDJSON source, since 10,000 patients take over an hour through
sekmet.

Prints one JSON line per phase, then details, then ``summary:`` lines (each
figure against its ceiling or goal) that ``python -m bench`` gathers at the
top of bench/results.md.  Not a test: timings depend on the machine.
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
BEFORE_BATCH = 20  # issue 18: patients per search before batches were packed to the URL budget
PAGE = 500
CHANGED = 0.01  # the share of resources changed at the server before the incremental pass
INCREMENTAL_GOAL = 5.0  # % of the full sync's time (ideally near the share changed)
SYNC_GOAL = 2.0  # issue 9: a full sync within 2x the time of the bare page walk


def source_settings(base_url: str) -> dict[str, Any]:
    """The REST source as a site sets it: default batching (packed up to max_url_bytes)."""
    return {"kind": "fhir-rest", "base_url": base_url, "page_size": PAGE}


def before_settings(base_url: str) -> dict[str, Any]:
    """The source as it batched before issue 18: a fixed 20 patients per search, whatever the URL."""
    return {**source_settings(base_url), "patient_batch_size": BEFORE_BATCH, "max_url_bytes": 65536}


def config_for(work: Path, data: Path, base_url: str, source: dict[str, Any] | None = None) -> Any:
    """A one-site config over ``work`` (state, secret, repository); ``source`` overrides the REST one."""
    from adapter import config as config_mod
    from adapter import paths

    work.mkdir(parents=True, exist_ok=True)
    (work / "site-secret.key").write_text("bench-only-secret-0123456789abcdef\n")
    (work / "site-secret.key").chmod(0o600)  # else the adapter warns on every load
    raw = {
        "study": {"mappings": str(paths.default_mappings_dir())},
        "store": {"url": f"sqlite:///{work / 'state.db'}"},
        "privacy": {"hmac_key_file": str(work / "site-secret.key")},
        "sites": [
            {
                "id": SITE,
                "timezone": "America/Chicago",
                "roster": str(data / SITE / "roster.csv"),
                "source": source or source_settings(base_url),
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

    from adapter import sync
    from adapter.fhir import rest
    from adapter.mapping import discovery

    config = config_for(Path(tempfile.mkdtemp(dir=data.parent)), data, base_url)  # in the run's scratch
    setup = sync.SiteSetup.load(config, config.sites[0])
    wanted = discovery.source_wanted(setup.catalog)
    source = rest.RestSearchSource(SITE, config.sites[0].source, roster=setup.roster, wanted=wanted)
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

    patients = []
    for query in source.identifier_queries():
        patients += walk(f"{base_url}/Patient", dict(query.params))
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
    from adapter import sync
    from adapter.fhir import rest
    from adapter.mapping import discovery

    config = config_for(Path(tempfile.mkdtemp(dir=data.parent)), data, base_url)  # in the run's scratch
    setup = sync.SiteSetup.load(config, config.sites[0])
    wanted = discovery.source_wanted(setup.catalog)
    source = rest.RestSearchSource(SITE, config.sites[0].source, roster=setup.roster, wanted=wanted)
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


def phase_sync(data: Path, base_url: str, work: Path, changed: float) -> dict[str, Any]:
    """A full sync from an empty state, then incremental passes: with no change, then after changes.

    The incremental passes run from the stored watermarks with the sync's
    overlap set to zero: the whole site was loaded into the server minutes
    ago, so the default five-minute overlap (clock skew and late commits,
    adapter/sync/ingest.py) would bring most of it back and measure a re-read of
    everything instead of an incremental pass.  On a real schedule the
    overlap holds only the last five minutes of changes, which the pass skips
    as versions already mapped.  They run in the process of the full sync, as
    in the service (``trial-adapter run``), so the one-off warm-up of a first
    pass (unit registry, models) is not charged to them.

    With ``changed`` > 0 two passes follow, each after that share of the
    stored resources changed at the server (``change_resources``): first all
    the resources of that share of the patients ("clustered": the cheapest
    case for per-subject derivation), then that share of the resources
    spread evenly (the issue's figure: with ~150 resources per patient, 1 %
    of them touches most patients, each of whom is derived again).
    """
    from adapter import sync
    from adapter.store import db
    from adapter.sync import ingest

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
    ingest.OVERLAP = dt.timedelta(0)
    before_config = config_for(work, data, base_url, before_settings(base_url))
    before = sync.SiteSetup.load(before_config, before_config.sites[0])
    for name, pass_setup in (("again_before", before), ("again", setup)):
        again = incremental_pass(pass_setup, sessions)
        expected = searches_planned(pass_setup)
        result[name] = {**again, "expected": expected, "pages_beyond_first": again["searches"] - expected}
    if changed:
        for spread in ("clustered", "spread"):
            changes = change_resources(base_url, data, sessions, changed, clustered=spread == "clustered")
            result[spread] = {"changes": changes, **incremental_pass(setup, sessions)}
    return result


def searches_planned(setup: Any) -> int:
    """Searches an incremental pass plans: identifier searches, then one per (type, batch, code chunk)."""
    source = setup.make_source()
    ids = [line.resource["id"] for line in source.patients() if hasattr(line, "resource")]
    since = dt.datetime.now(dt.UTC)  # any instant: _lastUpdated has the same length
    types = ("Observation", "MedicationAdministration", "Procedure")
    return len(source.identifier_queries()) + sum(len(source.plan(t, ids, since)) for t in types)


def incremental_pass(setup: Any, sessions: Any) -> dict[str, Any]:
    """One pass from the stored watermarks: its time, its searches and the server's share, what changed."""
    import sqlalchemy as sa

    from adapter import sync
    from adapter.store import models

    def outbox_size() -> int:
        with sessions() as session:
            return int(session.scalar(sa.select(sa.func.count()).select_from(models.OutboxItem)) or 0)

    source = setup.make_source()
    answers: list[float] = []  # per search, the time until the server's answer arrived (requests' elapsed)
    source.client.session.hooks["response"].append(  # type: ignore[attr-defined]
        lambda r, *a, **k: answers.append(r.elapsed.total_seconds())
    )
    outbox = outbox_size()
    started = time.perf_counter()
    summary = sync.sync_site(setup, sessions, source=source)
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "searches": len(answers),
        "ehr_requests": summary.ehr_requests,
        "server_seconds": round(sum(answers), 2),
        "fetched": summary.resources_read - len(setup.roster.entries),  # every pass reads the patients
        "remapped": summary.resources_mapped,
        "facts": summary.facts_written,
        "subjects_derived": summary.subjects_derived,
        "records_changed": summary.upserts + summary.retractions,
        "outbox_added": outbox_size() - outbox,
    }


# ---------------------------------------------------------------- changes at the server


def amended(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource as a site would correct it: a changed value, else an amendment note.

    Observations and MedicationAdministrations get their value (dose) raised
    by 5 %, so facts and possibly records change; Procedures, which carry no
    value, get a note, which the mapping reads past (re-fetched and re-mapped,
    nothing downstream changes).
    """
    changed = {k: v for k, v in resource.items() if k != "meta"}  # the server stamps its own meta
    quantity = changed.get("valueQuantity") or (changed.get("dosage") or {}).get("dose")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
        value = quantity["value"]
        quantity["value"] = round(value * 1.05, 3) if round(value * 1.05, 3) != value else value + 1
    else:
        changed["note"] = [*changed.get("note", []), {"text": "amended (sync_bench)"}]
    return changed


def change_resources(
    base_url: str, data: Path, sessions: Any, fraction: float, *, clustered: bool
) -> dict[str, Any]:
    """PUT amended copies of ``fraction`` of the resources the full sync stored, through the server.

    sekmet ignores a client's ``meta.lastUpdated``, so only a real update moves
    a resource past the watermark.  The resources come from the stored state,
    so each is one the sync's searches return: every ``1/fraction``-th per
    type by id (ids are random, so this spreads over the patients), or, with
    ``clustered``, all those of every ``1/fraction``-th linked patient.  The
    copies PUT are the NDJSON lines loaded into the server (the first of a
    duplicated id, as ``tests/fhirserver.py`` loads them).
    """
    import requests
    import sqlalchemy as sa

    from adapter import sync
    from adapter.store import models

    step = max(1, round(1 / fraction))
    rows = sa.select(models.SourceResource.resource_id).where(
        models.SourceResource.site == SITE, models.SourceResource.outcome != "deleted"
    )
    chosen: dict[str, set[str]] = {}
    with sessions() as session:
        if clustered:
            refs = session.scalars(
                sa.select(models.PatientLink.patient_ref)
                .where(models.PatientLink.site == SITE, models.PatientLink.subject_id.is_not(None))
                .order_by(models.PatientLink.patient_ref)
            ).all()
            rows = rows.where(models.SourceResource.patient_ref.in_(refs[::step]))
        for resource_type in sync.MAPPED_TYPES:
            ids = session.scalars(
                rows.where(models.SourceResource.resource_type == resource_type).order_by(
                    models.SourceResource.resource_id
                )
            ).all()
            chosen[resource_type] = set(ids if clustered else ids[::step])
    updates: list[dict[str, Any]] = []
    patients: set[str] = set()
    for resource_type, ids in chosen.items():
        found: dict[str, dict[str, Any]] = {}
        for path in sorted((data / SITE).glob(f"{resource_type}*.ndjson")):
            with path.open(encoding="utf-8") as lines:
                for line in lines:
                    try:
                        resource = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(resource, dict) and resource.get("id") in ids:
                        found.setdefault(resource["id"], resource)
        for resource in found.values():
            updates.append(amended(resource))
            patients.add(str((resource.get("subject") or {}).get("reference")))
    with requests.Session() as http:
        for start in range(0, len(updates), 500):  # transactions of 500 PUTs, as tests/fhirserver.py loads
            entries = [
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                for r in updates[start : start + 500]
            ]
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            response = http.post(
                base_url,
                data=json.dumps(bundle),
                headers={"Content-Type": "application/fhir+json"},
                timeout=300,
            )
            response.raise_for_status()
    return {
        "changed": len(updates),
        "by_type": {t: len(ids) for t, ids in chosen.items()},
        "patients": len(patients),
    }


# ---------------------------------------------------------------- driver


def run_phase(*args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.sync_bench", "--phase", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(patients: int, scratch: Path, ceiling: bool = True, changed: float = 0.0) -> dict[str, Any]:
    """Load ``patients`` into a fresh server and run the phases; ``changed``: the incremental's fraction."""
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
        result["sync"] = run_phase(
            "sync", str(data), server.base_url, str(scratch / f"work-{patients}"), str(changed)
        )
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
    parser.add_argument(
        "--changed", type=float, default=CHANGED, help="fraction changed before the incremental pass"
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
            print(json.dumps(phase_sync(Path(rest[0]), rest[1], Path(rest[2]), float(rest[3]))))
        return
    large, small = (20, 5) if args.quick else (args.patients, args.small)
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
        big = measure(large, Path(tmp), ceiling=not args.sync_only, changed=args.changed)
        little = measure(small, Path(tmp), ceiling=False) if small else None
    for line in summarize(big, little, args.changed):
        print(line)


def summarize(big: dict[str, Any], little: dict[str, Any] | None, changed: float) -> list[str]:
    """Details first, then ``summary:`` lines (each figure against its goal) for bench/results.md."""
    lines, summary = [], []
    sync = big["sync"]
    full = max(sync["seconds"], 1e-9)
    if "bare" in big:
        ratio = sync["seconds"] / max(big["bare"]["seconds"], 1e-9)
        source_ratio = big["source"]["seconds"] / max(big["bare"]["seconds"], 1e-9)
        lines.append(
            f"REST source alone (fetch, check, page; nothing downstream) / bare walk: {source_ratio:.2f}x "
            f"({big['source']['seconds']} s)"
        )
        summary.append(
            f"full sync from the local FHIR server, {big['patients']:,} patients: {ratio:.2f}x the time of "
            f"a bare requests+json page walk, {100 / ratio:.0f} % of its throughput "
            f"({sync['seconds']} s vs {big['bare']['seconds']} s, {big['bare']['pages']} pages; goal "
            f"<= {SYNC_GOAL:g}x): {'met' if ratio <= SYNC_GOAL else 'not met'}"
        )
    if little is not None:
        lines.append(
            f"peak RSS of the REST sync: {little['sync']['peak_rss_mib']} MiB at {little['patients']:,} "
            f"patients, {sync['peak_rss_mib']} MiB at {big['patients']:,} patients "
            "(the 100 / 1,000 / 10,000 series is memory_bench's)"
        )
    again = sync["again"]
    lines.append(
        f"incremental pass without changes: {again['seconds']} s ({100 * again['seconds'] / full:.1f} % "
        f"of the full sync; the server's answers {again['server_seconds']} s), {again['searches']} searches "
        f"(one per type and batch plus identifier searches: {again['expected']}), {again['remapped']} "
        f"re-mapped, {again['records_changed']} records changed, {again['outbox_added']} outbox items"
    )
    if "again_before" in sync:
        before = sync["again_before"]
        ratio = again["ehr_requests"] / max(before["ehr_requests"], 1)
        summary.append(
            f"EHR requests per incremental pass at {big['patients']:,} patients: "
            f"{before['ehr_requests']} with {BEFORE_BATCH} patients per search, "
            f"{again['ehr_requests']} packed to max_url_bytes "
            f"({100 * ratio:.0f} %; goal <= 50 %): {'met' if ratio <= 0.5 else 'not met'}"
        )
    for spread in ("clustered", "spread"):
        if spread not in sync:
            continue
        inc, changes = sync[spread], sync[spread]["changes"]
        consistent = inc["fetched"] == inc["remapped"] == changes["changed"]
        check = "exactly the changed resources" if consistent else "NOT the changed set"
        lines.append(
            f"incremental pass after {changes['changed']} resources changed at the server, {spread} "
            f"({changes['by_type']}, {changes['patients']} patients): {inc['seconds']} s "
            f"({100 * inc['seconds'] / full:.1f} % of the full sync; the server's answers "
            f"{inc['server_seconds']} s), {inc['searches']} searches, {inc['fetched']} fetched and "
            f"{inc['remapped']} re-mapped ({check}), {inc['subjects_derived']} subjects re-derived, "
            f"{inc['records_changed']} records changed, {inc['outbox_added']} outbox items"
        )
    if "spread" in sync:
        inc = sync["spread"]
        share = 100 * inc["seconds"] / full
        consistent = inc["fetched"] == inc["remapped"] == inc["changes"]["changed"]
        verdict = "met" if share < INCREMENTAL_GOAL and consistent else "not met"
        server = 100 * min(inc["server_seconds"], inc["seconds"]) / full
        summary.append(
            f"incremental with {100 * changed:g} % changed: {share:.1f} % of full sync "
            f"({inc['seconds']} s vs {sync['seconds']} s; goal < {INCREMENTAL_GOAL:g} %): {verdict} "
            f"[waiting for the server's answers: {server:.1f} %, the adapter: {share - server:.1f} %]"
        )
    return lines + [f"summary: {line}" for line in summary]


if __name__ == "__main__":
    main()
