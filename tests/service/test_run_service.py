"""``trial-adapter run`` as a site runs it: scheduled syncs, metrics, SIGTERM, kill -9, SIGHUP.

The service runs as a real subprocess on demo sites with 8 patients each
(a pass spans many committed pages and takes seconds), so a signal can land
in the middle of one.  The trial repository it ends with is compared with
an uninterrupted in-process run of the same data and secret.
"""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter import paths
from adapter.cli.main import main
from adapter.demo import site
from adapter.service import job
from adapter.store import db, models

import pgserver
from golden import repository_records
from support import TEST_SECRET, phi_strings, prepare_demo_workdir

pytestmark = pytest.mark.slow  # seconds each: real processes or servers (README: fast local run)

TRIAL_ADAPTER = str(Path(sys.executable).parent / "trial-adapter")
WriteConfig = Callable[..., Path]


class RunningService:
    """``trial-adapter run`` in a subprocess, its JSON log lines collected as they come."""

    def __init__(self, config: Path) -> None:
        self.config = config_mod.load_config(config)
        self.process = subprocess.Popen(
            [TRIAL_ADAPTER, "--log-level", "debug", "--json-logs", "run", "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.not_json: list[str] = []
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.address = self.wait_for(lambda e: e["event"] == "health endpoint listening")["address"]

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._arrived:
                self.raw.append(line)
                try:
                    self.events.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    self.not_json.append(line)  # every line must be one JSON object
                self._arrived.notify_all()

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._arrived:
            while True:
                for event in self.events[seen:]:
                    if match(event):
                        return event
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no matching log event; last: {self.events[-5:]}")
                self._arrived.wait(min(left, 0.5))

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{self.address}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, float]:
        """Send ``sig``; return the exit code and the seconds until the process was gone."""
        sent = time.monotonic()
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            last = self.events[-8:]
            raise AssertionError(f"still running {timeout} s after the signal; last: {last}") from None
        gone = time.monotonic() - sent
        self._reader.join(timeout=5)
        return code, gone

    def log_text(self) -> str:
        stdout = self.process.stdout.read() if self.process.stdout and self.process.poll() is not None else ""
        return "".join(self.raw) + stdout


def metric_samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


@functools.cache
def _sessions(url: str) -> sessionmaker[Session]:
    return db.open_store(url)


def store_rows(config: config_mod.Config) -> tuple[list[tuple[str, str]], int]:
    """(site, outcome) of every pass, and how many outbox items were ever enqueued."""
    with _sessions(config.store.url)() as session:
        runs = session.execute(
            sa.select(models.SyncRun.site, models.SyncRun.outcome).order_by(models.SyncRun.id)
        )
        enqueued = session.scalar(sa.select(sa.func.count()).select_from(models.OutboxItem)) or 0
        return [(run.site, run.outcome) for run in runs], enqueued


def wait_until(condition: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def first_page_committed(config: config_mod.Config, site_id: str) -> bool:
    """True once the pass has committed a page (so a signal now lands mid-pass, after real work)."""
    with _sessions(config.store.url)() as session:
        return bool(
            session.scalar(
                sa.select(sa.func.count())
                .select_from(models.SourceResource)
                .where(models.SourceResource.site == site_id)
            )
        )


def settled(config: config_mod.Config, passes: int = 1) -> bool:
    """Every site has ``passes`` ok passes and the outbox is empty."""
    runs, enqueued = store_rows(config)
    with _sessions(config.store.url)() as session:
        pending = session.scalar(
            sa.select(sa.func.count())
            .select_from(models.OutboxItem)
            .where(models.OutboxItem.delivered_at.is_(None))
        )
    ok = {s.id: sum(1 for run in runs if run == (s.id, "ok")) for s in config.sites}
    return enqueued > 0 and pending == 0 and all(count >= passes for count in ok.values())


@pytest.fixture(scope="module")
def reference(big_demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], int]:
    """The uninterrupted run of the same data: its repository and how many items it enqueued."""
    config = prepare_demo_workdir(tmp_path_factory.mktemp("reference"))
    config = site.demo_config(config.repository.path.parent, data_dir=big_demo_data)
    job.run_once(config, config.sites)
    return repository_records(config), store_rows(config)[1]


@pytest.fixture
def service_runs() -> Iterator[list[RunningService]]:
    """Services started by a test; any still running at the end are killed."""
    started: list[RunningService] = []
    yield started
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(timeout=10)


def test_sigterm_mid_sync_stops_cleanly_and_a_restart_resumes(
    big_demo_data: Path,
    config_file: WriteConfig,
    reference: tuple[dict[str, Any], int],
    service_runs: list[RunningService],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = config_file(data=big_demo_data, sync_minutes=0.05, delivery_minutes=60)
    first = RunningService(path)
    service_runs.append(first)
    config = first.config
    started = first.wait_for(lambda e: e["event"] == "sync started")
    wait_until(lambda: first_page_committed(config, started["site"]), 20, "the first committed page")
    code, seconds = first.stop(signal.SIGTERM)
    assert code == 0, first.events[-5:]
    assert seconds < 5, f"SIGTERM took {seconds:.2f}s"
    stopped = first.wait_for(lambda e: e["event"] == "sync finished")
    assert stopped["outcome"] == "stopped", "the signal landed mid-pass and ended it after a page"
    first.wait_for(lambda e: e["event"] == "service stopped")
    print(f"\nSIGTERM mid-sync -> exit 0 in {seconds:.2f}s")  # the figure for the report

    second = RunningService(path)
    service_runs.append(second)
    assert second.get("/readyz")[0] == 503, "not ready before every site has synced"
    wait_until(lambda: settled(config, passes=2), 60, "two passes of every site and an empty outbox")
    assert repository_records(config) == reference[0]
    runs, enqueued = store_rows(config)
    assert enqueued == reference[1], "the resumed pass enqueued nothing twice"
    assert runs[0] == (started["site"], "stopped")

    assert second.get("/healthz") == (200, "ok\n")
    assert second.get("/readyz")[0] == 200
    samples = metric_samples(second.get("/metrics")[1])
    for site_id in ("demo-north", "demo-east"):
        assert samples[("trial_adapter_resources_fetched_total", (("site", site_id),))] > 0
        assert samples[("trial_adapter_outbox_pending", (("site", site_id),))] == 0
        assert (
            samples[("trial_adapter_last_success_timestamp_seconds", (("site", site_id),))]
            > time.time() - 120
        )
    delivered = sum(v for (name, _), v in samples.items() if name == "trial_adapter_records_delivered_total")
    assert delivered > 0
    assert samples[("trial_adapter_open_issues", (("kind", "unknown_code"), ("site", "demo-east")))] >= 1
    assert samples[("trial_adapter_store_up", ())] == 1

    capsys.readouterr()
    assert main(["status", "--json", "-c", str(path)]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert [s["site"] for s in report["sites"]] == ["demo-north", "demo-east"]
    assert all(s["next_sync"] and s["next_sweep"] and s["watermarks"] for s in report["sites"])
    assert report["next_delivery"] is not None and report["outbox_pending"] == 0
    assert main(["status", "-c", str(path)]) == 0
    table = capsys.readouterr().out
    assert "demo-north" in table and "Watermarks" in table and "Outbox: 0 waiting" in table

    # SIGHUP: a broken config is refused and the service keeps going; a good one is taken.
    original = path.read_text()
    path.write_text(original.replace("sync_interval_minutes = 0.05", "sync_interval_minutes = -1"))
    second.process.send_signal(signal.SIGHUP)
    second.wait_for(lambda e: e["event"] == "reload failed; the previous config stays in use")
    path.write_text(original.replace("sync_interval_minutes = 0.05", "sync_interval_minutes = 30"))
    second.process.send_signal(signal.SIGHUP)
    second.wait_for(lambda e: e["event"] == "config reloaded")

    code, seconds = second.stop(signal.SIGINT, timeout=60)
    assert code == 0
    logs = first.log_text() + second.log_text()
    for needle in phi_strings(big_demo_data) | {TEST_SECRET.strip()}:
        assert needle not in logs, "PHI or the site secret in the service log"
    assert "job finished" in logs and '"run_id"' in logs and '"seconds"' in logs
    assert first.not_json == second.not_json == [], "one JSON object per log line"


def test_kill_9_mid_sync_then_restart_gives_the_same_repository(
    big_demo_data: Path,
    config_file: WriteConfig,
    reference: tuple[dict[str, Any], int],
    service_runs: list[RunningService],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = config_file(data=big_demo_data, sync_minutes=60, delivery_minutes=60)
    first = RunningService(path)
    service_runs.append(first)
    config = first.config
    started = first.wait_for(lambda e: e["event"] == "sync started")
    wait_until(lambda: first_page_committed(config, started["site"]), 20, "the first committed page")
    # Frozen at once, so the pass cannot finish while status is asked: the kill lands mid-pass
    # however fast a pass has become (a stopped process still holds its lock and is alive).
    first.process.send_signal(signal.SIGSTOP)
    capsys.readouterr()
    assert main(["status", "--json", "-c", str(path)]) == 0
    during = {s["site"]: s for s in orjson.loads(capsys.readouterr().out)["sites"]}
    assert during[started["site"]]["last_run"]["outcome"] == "running"
    code, _ = first.stop(signal.SIGKILL)
    assert code == -signal.SIGKILL
    runs, _ = store_rows(config)
    assert runs[-1] == (started["site"], "running"), "killed in the middle of a pass"
    assert main(["status", "--json", "-c", str(path)]) == 0
    after = orjson.loads(capsys.readouterr().out)
    killed = next(s for s in after["sites"] if s["site"] == started["site"])
    assert killed["last_run"]["outcome"] == "interrupted", "status sees that the pass's process is gone"
    assert after["service_running"] is False
    assert all(s["next_sync"] is None for s in after["sites"]), "no countdown for a dead service"
    assert main(["status", "-c", str(path)]) == 0
    assert "is not running" in capsys.readouterr().out

    second = RunningService(path)
    service_runs.append(second)
    wait_until(lambda: settled(config), 60, "every site synced and the outbox empty")
    code, _ = second.stop(signal.SIGTERM)
    assert code == 0
    assert repository_records(config) == reference[0]
    runs, enqueued = store_rows(config)
    assert enqueued == reference[1], "nothing enqueued twice"
    assert runs[0] == (started["site"], "interrupted"), "status tells the killed pass apart"


def test_a_broken_config_stops_the_start_with_its_exit_code(
    tmp_path: Path, config_file: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(data=tmp_path)
    path.write_text(path.read_text().replace('listen = "127.0.0.1:0"', "listen = 9477"))
    assert main(["run", "-c", str(path)]) == 3
    assert "service.listen" in capsys.readouterr().err


def test_the_service_runs_in_process_on_each_backend(
    store_url: str, config_file: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """Start, sync both demo sites, deliver, answer /readyz, stop: SQLite and PostgreSQL alike."""
    from adapter.service import daemon as service_mod

    path = config_file(data=paths.demo_data_dir(), store_url=store_url, delivery_minutes=60)
    config = config_mod.load_config(path)
    running = service_mod.Service(lambda: config_mod.load_config(path))
    with caplog.at_level("DEBUG", logger="adapter"):
        running.start()
        try:
            wait_until(lambda: settled(config), 60, "both sites synced and delivered")
            code, body = (
                urllib.request.urlopen(f"http://{running.health_address}/readyz", timeout=5).status,
                "",
            )
            assert code == 200, body
        finally:
            running.request_stop()
            stopped = running.serve()
    assert stopped.clean and stopped.exit_code == 0
    assert {p.name for p in config.repository.path.glob("*.ndjson")} >= {"Transplant.ndjson"}
    assert pgserver.PASSWORD not in caplog.text


def test_a_pass_stuck_past_the_stop_timeout_is_reported_not_waited_for(
    config_file: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung EHR read cannot be interrupted; the service gives up after stop_timeout_seconds."""
    from adapter.service import daemon as service_mod

    path = config_file(data=paths.demo_data_dir())
    path.write_text(path.read_text().replace("stop_timeout_seconds = 20", "stop_timeout_seconds = 0.5"))
    release = threading.Event()
    entered = threading.Event()

    def hung(*_args: object, **_kwargs: object) -> None:
        entered.set()
        release.wait(30)  # ignores the stop flag, like a blocked socket read

    monkeypatch.setattr(job, "sync_locked", hung)
    running = service_mod.Service(lambda: config_mod.load_config(path))
    running.start()
    try:
        assert entered.wait(20)
        running.request_stop()
        stopped = running.serve()
    finally:
        release.set()
    assert not stopped.clean and stopped.exit_code == 1
    assert 0.5 <= stopped.seconds < 5
