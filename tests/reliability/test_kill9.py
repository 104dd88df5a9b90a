"""kill -9 at seeded random points of a sync and its delivery, then finish.

The real CLI runs as a subprocess on the bundled demo with a fixed secret;
it is killed with SIGKILL at 20 seeded points spread over start-up, ingest,
derivation and delivery, each kill landing on whatever state the previous
ones left.  A final uninterrupted run must leave the trial repository exactly
as the golden (uninterrupted) run does: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapter import config as config_mod
from adapter.service import job
from adapter.store import db, models

from golden import repository_records
from support import prepare_demo_workdir

pytestmark = pytest.mark.slow  # seconds each: real processes or servers (README: fast local run)

KILLS = 20
SEED = 20261125


def cli(workdir: Path) -> list[str]:
    return [sys.executable, "-m", "adapter.cli", "demo", "--workdir", str(workdir), "--quiet"]


def test_sigkill_at_twenty_points_then_resume(
    tmp_path: Path, demo_run: tuple[config_mod.Config, job.JobResult]
) -> None:
    reference, _ = demo_run
    workdir = tmp_path / "killed"
    prepare_demo_workdir(workdir)
    started = time.monotonic()
    finished = subprocess.run(cli(workdir), capture_output=True, check=True, timeout=600)
    full_run = time.monotonic() - started
    assert b"Delivered" in finished.stdout
    # Start again from nothing: the first run only measured how long a run takes.
    for path in workdir.iterdir():
        if path.name != "site-secret.key":
            _remove(path)

    rng = random.Random(SEED)
    killed_mid_run = 0
    for _ in range(KILLS):
        process = subprocess.Popen(cli(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, full_run))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed_mid_run += 1
        process.wait(timeout=300)
    assert killed_mid_run >= KILLS // 2, "most kills must land mid-run to prove anything"

    subprocess.run(cli(workdir), capture_output=True, check=True, timeout=600)
    config = prepare_demo_workdir(workdir)
    assert repository_records(config) == repository_records(reference)
    sessions = db.open_store(config.store.url)
    with sessions() as session:
        pending = session.scalar(
            sa.select(sa.func.count())
            .select_from(models.OutboxItem)
            .where(models.OutboxItem.delivered_at.is_(None))
        )
        dirty = session.scalar(sa.select(sa.func.count()).select_from(models.DirtySubject))
    assert pending == 0 and dirty == 0


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            _remove(child)
        path.rmdir()
    else:
        path.unlink()
