"""Soak: memory of many passes in one process must stay flat (issue 13, item 8).

    python -m bench.soak_bench                                   # 1,000 passes, then 5 min of the service
    python -m bench.soak_bench --passes 300 --service-minutes 2  # any size
    python -m bench.soak_bench --quick                           # 60 passes, 1 min, to check it still runs

A service meant to run for months must not grow with every pass.  Two
phases, each in its own process so its RSS is its own:

- passes: a small site (demo-north with ``--patients`` roster patients,
  ``adapter.demo.generator``, from its NDJSON folder) synced and delivered
  ``--passes`` times in one process with ``job.run_once``, the function
  ``sync --once`` and ``demo`` call: it loads the site's files, opens the
  state database and delivers the outbox every pass, as the service's turns
  do.  Before each pass one Observation gets a new version and value (two
  values in turn), so every pass maps a resource, re-derives a subject,
  enqueues and delivers, not only finds nothing new;
- service: ``trial-adapter run`` on the same kind of site with
  ``sync_interval_minutes = 0.05`` (a pass every 3 s, the shortest the config
  allows) and deliveries at the same interval for ``--service-minutes``; the
  benchmark changes one Observation every 3 s, scrapes ``/metrics`` and
  ``/readyz`` as Prometheus and a load balancer would, and reads the
  service's RSS from ``/proc/<pid>/status``.

Warm-up is the first tenth of each run (imports, SQLite's page cache, the
caches of SQLAlchemy and the catalog filling up).  The figure is the drift:
the highest RSS after warm-up against the RSS at the end of warm-up (goal:
within 5 %), with the least-squares slope after warm-up (KiB per pass, per
minute) that says how much a month would add.

Prints one JSON line per RSS sample, then ``summary:`` lines that
``python -m bench`` gathers at the top of bench/results.md.  Not a test:
RSS depends on the machine, the allocator and the Python version
(tests/test_soak.py is the deterministic guard).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.memory_bench import generate_site
from bench.sync_bench import SITE, config_for

ROOT = Path(__file__).resolve().parents[1]
PASSES = 1000
SERVICE_MINUTES = 5.0
PATIENTS = 10
WARMUP = 0.1  # the share of a run counted as warm-up
GOAL = 5.0  # % drift allowed after warm-up
INTERVAL_MINUTES = 0.05  # the service's sync and delivery interval: the config's minimum, 3 s


def rss_mib(pid: int | str = "self") -> float:
    """Resident memory now (``VmRSS``) of this process or of ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc: this benchmark needs Linux")


class ChangingObservation:
    """Gives one Observation of the site a new version (and one of two values) on each ``touch``."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "Observation.ndjson"
        self.lines = self.path.read_bytes().splitlines()
        self.first = json.loads(self.lines[0])
        self.value = self.first.get("valueQuantity", {}).get("value", 1)
        self.version = 1

    def touch(self) -> None:
        self.version += 1
        changed = dict(self.first)
        changed["meta"] = {**changed.get("meta", {}), "versionId": str(self.version)}
        if "valueQuantity" in changed:
            value = self.value if self.version % 2 else self.value * 1.1
            changed["valueQuantity"] = {**changed["valueQuantity"], "value": round(value, 3)}
        lines = [json.dumps(changed, separators=(",", ":")).encode(), *self.lines[1:]]
        scratch = self.path.with_suffix(".tmp")
        scratch.write_bytes(b"\n".join(lines) + b"\n")
        scratch.replace(self.path)  # a reader sees the old file or the new one, never half of it


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y)."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0


def drift(samples: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """RSS at the end of warm-up, the highest after it, the drift in % and the slope per ``key``."""
    end = samples[-1][key]
    warm = next(s for s in samples if s[key] >= end * WARMUP)
    after = [s for s in samples if s[key] >= warm[key]]
    peak = max(s["rss_mib"] for s in after)
    return {
        "warm_at": warm[key],
        "rss_warm_mib": warm["rss_mib"],
        "rss_peak_after_mib": peak,
        "rss_last_mib": samples[-1]["rss_mib"],
        "drift_pct": round(100 * (peak - warm["rss_mib"]) / warm["rss_mib"], 2),
        "slope_kib": round(1024 * slope([(s[key], s["rss_mib"]) for s in after]), 2),
    }


def small_site(scratch: Path, patients: int) -> Any:
    """demo-north with ``patients`` in ``scratch/data``; a config with its state in ``scratch/work``."""
    generate_site(scratch / "data", patients)
    source = {"kind": "ndjson", "path": str(scratch / "data" / SITE)}
    return config_for(scratch / "work", scratch / "data", "", source=source)


# ---------------------------------------------------------------- phase: passes (its own process)


def phase_passes(scratch: Path, passes: int, patients: int) -> None:
    """``passes`` passes of one small site in this process; a JSON line per sample, then the drift."""
    from adapter.service import job

    config = small_site(scratch, patients)
    observation = ChangingObservation(scratch / "data" / SITE)
    every = max(1, passes // 50)
    samples: list[dict[str, Any]] = []
    started = time.perf_counter()
    for done in range(1, passes + 1):
        if done > 1:
            observation.touch()
        result = job.run_once(config, config.sites)
        if result.busy or not result.syncs:
            raise RuntimeError(f"pass {done} did not run: {result}")
        if done == 1 or done % every == 0:
            samples.append(
                {
                    "pass": done,
                    "rss_mib": round(rss_mib(), 1),
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
            print(json.dumps(samples[-1]), flush=True)
    print(json.dumps({"passes": passes, "patients": patients, **drift(samples, "pass")}), flush=True)


# ---------------------------------------------------------------- phase: the service (a subprocess)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def run_service(scratch: Path, minutes: float, patients: int) -> dict[str, Any]:
    """``trial-adapter run`` for ``minutes`` at 3-second intervals; its RSS every 3 s."""
    from adapter import paths

    small_site(scratch, patients)  # also writes the secret
    work = scratch / "work"
    port = _free_port()
    config = work / "trial-adapter.toml"
    config.write_text(
        f'[study]\nmappings = "{paths.default_mappings_dir()}"\n'
        f'[store]\nurl = "sqlite:///{work / "state.db"}"\n'
        f'[privacy]\nhmac_key_file = "{work / "site-secret.key"}"\n'
        f"[schedule]\nsync_interval_minutes = {INTERVAL_MINUTES}\n"
        f"delivery_interval_minutes = {INTERVAL_MINUTES}\n"
        f'[service]\nlisten = "127.0.0.1:{port}"\n'
        f'[[sites]]\nid = "{SITE}"\ntimezone = "America/Chicago"\n'
        f'roster = "{scratch / "data" / SITE / "roster.csv"}"\n'
        f'[sites.source]\nkind = "ndjson"\npath = "{scratch / "data" / SITE}"\n'
        f'[repository]\nkind = "file"\npath = "{work / "repository"}"\n',
        encoding="utf-8",
    )
    observation = ChangingObservation(scratch / "data" / SITE)
    log = (scratch / "service.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "adapter.cli", "--log-level", "warning", "run", "-c", str(config)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    samples: list[dict[str, Any]] = []
    scrapes: dict[int, int] = {}
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < minutes * 60:
            if process.poll() is not None:
                raise RuntimeError(f"the service exited ({process.returncode}): {_tail(scratch)}")
            time.sleep(INTERVAL_MINUTES * 60)
            observation.touch()
            for path in ("/metrics", "/readyz"):
                with contextlib.suppress(OSError):  # not listening yet: not a failure
                    status = _get(f"http://127.0.0.1:{port}{path}")
                    scrapes[status] = scrapes.get(status, 0) + 1
            sample = {"minute": round(elapsed / 60, 2), "rss_mib": round(rss_mib(process.pid), 1)}
            samples.append(sample)
            if len(samples) % 10 == 1:
                print(json.dumps(sample), flush=True)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    runs = _sync_runs(work / "state.db")
    return {"service_minutes": minutes, "sync_runs": runs, "scrapes": scrapes, **drift(samples, "minute")}


def _sync_runs(database: Path) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(database) as connection:
        return dict(connection.execute("SELECT outcome, count(*) FROM sync_runs GROUP BY outcome").fetchall())


def _tail(scratch: Path) -> str:
    return (scratch / "service.log").read_text(errors="replace")[-2000:]


# ---------------------------------------------------------------- the runner


def summarize(passes: dict[str, Any] | None, service: dict[str, Any] | None) -> list[str]:
    lines = []
    if passes is not None:
        verdict = "met" if passes["drift_pct"] <= GOAL else "not met"
        lines.append(
            f"summary: soak, {passes['passes']:,} passes of a {passes['patients']}-patient site in one "
            f"process (job.run_once): RSS {passes['rss_warm_mib']} MiB after {passes['warm_at']} passes, "
            f"at most {passes['rss_peak_after_mib']} MiB after, {passes['rss_last_mib']} MiB at the end: "
            f"drift {passes['drift_pct']:+.1f} % ({passes['slope_kib']:+.1f} KiB per pass; "
            f"goal: within {GOAL:.0f} %): {verdict}"
        )
    if service is not None:
        verdict = "met" if service["drift_pct"] <= GOAL else "not met"
        syncs = sum(service["sync_runs"].values())
        lines.append(
            f"summary: soak, the service (trial-adapter run) for {service['service_minutes']:g} min at 3-s "
            f"intervals ({syncs} sync passes): RSS {service['rss_warm_mib']} MiB after "
            f"{service['warm_at']} min, at most {service['rss_peak_after_mib']} MiB after, "
            f"{service['rss_last_mib']} MiB at the end: drift {service['drift_pct']:+.1f} % "
            f"({service['slope_kib']:+.1f} KiB per minute; goal: within {GOAL:.0f} %): {verdict}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passes", type=int, default=PASSES, help="passes in one process (0: skip)")
    parser.add_argument(
        "--service-minutes", type=float, default=SERVICE_MINUTES, help="minutes of the service (0: skip)"
    )
    parser.add_argument("--patients", type=int, default=PATIENTS, help="roster patients of the small site")
    parser.add_argument("--quick", action="store_true", help="60 passes and 1 minute of the service")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.passes, args.service_minutes = 60, 1.0
    if args.phase:
        phase_passes(Path(args.phase), args.passes, args.patients)
        return
    passes = service = None
    with tempfile.TemporaryDirectory(prefix="soak-bench-") as tmp:
        if args.passes:
            command = [sys.executable, "-m", "bench.soak_bench", "--phase", f"{tmp}/passes"]
            command += ["--passes", str(args.passes), "--patients", str(args.patients)]
            print(
                json.dumps({"phase": "passes", "passes": args.passes, "patients": args.patients}), flush=True
            )
            with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as child:
                assert child.stdout is not None
                last = ""
                for line in child.stdout:
                    print(line, end="", flush=True)
                    last = line
            if child.returncode:
                raise SystemExit(f"the passes phase failed (exit {child.returncode})")
            passes = json.loads(last)
        if args.service_minutes:
            print(json.dumps({"phase": "service", "minutes": args.service_minutes}), flush=True)
            os.makedirs(f"{tmp}/service")
            service = run_service(Path(tmp) / "service", args.service_minutes, args.patients)
            print(json.dumps(service), flush=True)
    for line in summarize(passes, service):
        print(line)


if __name__ == "__main__":
    main()
