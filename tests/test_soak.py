"""Memory does not grow with every pass (issue 13, item 8).

A sync repeated in one process (the service, or ``job.run_once`` in a loop)
grew ~100 KB per pass without end: an engine per ``open_store`` whose
compiled statements SQLAlchemy's mappers kept per dialect, and cyclic
garbage that ``gc.freeze`` in ``adapter.sync.collector`` set aside for good
(the pass's SQLAlchemy statements, the site lock and its heartbeat).
bench/soak_bench.py measures the RSS over 1,000 passes and of the running
service; this is the deterministic guard: traced allocations after warm-up.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapter.service import job
from adapter.store import db, models, schema

from support import prepare_demo_workdir

pytestmark = pytest.mark.slow  # seconds each: real processes or servers (README: fast local run)

WARM_UP = 5  # passes until the caches (compiled statements, catalog memo, SQLite pages) are full
PASSES = 10
WINDOWS = 3  # windows of PASSES measured at most (see the test's docstring)
# Net traced bytes the PASSES after warm-up may add.  Measured: -6 KB to -2 KB.
# An engine per pass added ~880 KB, the pass's garbage frozen ~330 KB, a lock
# cycle held across the pass ~30 KB.
GROWTH_LIMIT = 20_000


def measure_windows(workdir: Path) -> tuple[list[tuple[int, int]], list[int]]:
    """Warm up, then up to WINDOWS windows of PASSES passes: (bytes, gc objects) kept by each.

    Also returns the mapped count of each site in the last pass (it must be
    0: passes after the first find nothing new).
    """
    config = prepare_demo_workdir(workdir)
    config = config.model_copy(update={"sites": config.sites[:1]})  # demo-north: quicker, the same code
    tracemalloc.start()
    windows: list[tuple[int, int]] = []
    try:
        for _ in range(WARM_UP):
            job.run_once(config, config.sites)
        while len(windows) < WINDOWS and (not windows or windows[-1][0] >= GROWTH_LIMIT):
            before, objects_before = tracemalloc.get_traced_memory()[0], len(gc.get_objects())
            for _ in range(PASSES):
                result = job.run_once(config, config.sites)
            after, objects_after = tracemalloc.get_traced_memory()[0], len(gc.get_objects())
            windows.append((after - before, objects_after - objects_before))
    finally:
        tracemalloc.stop()
    return windows, [s.outcomes["mapped"] for s in result.syncs]


def test_passes_in_one_process_allocate_nothing_that_stays(tmp_path: Path) -> None:
    """Up to WINDOWS windows of PASSES passes; one of them must keep under GROWTH_LIMIT.

    Garbage the collector has not reached yet (it runs when it likes: no
    gc.collect() here, on purpose) shows as growth in some windows and as a
    fall in the next; a leak grows in every window, so the best one decides.
    The passes run in a fresh interpreter: in the test process, what earlier
    tests left behind (their engines' finalizers, captured output, bounded
    caches half full) grows by itself and is no measure of a pass.
    """
    script = (
        "import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
        "import test_soak; print(json.dumps(test_soak.measure_windows(Path(sys.argv[2]))))"
    )
    tests_dir = str(Path(__file__).resolve().parent)
    answer = subprocess.run(
        [sys.executable, "-c", script, tests_dir, str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert answer.returncode == 0, answer.stderr[-3000:]
    windows, mapped = json.loads(answer.stdout.strip().splitlines()[-1])
    assert mapped == [0], "passes after the first find nothing new"
    assert min(grown for grown, _ in windows) < GROWTH_LIMIT, (
        "every window of {} passes kept more: {}".format(
            PASSES,
            ", ".join(f"{grown:,} bytes ({objects:+,} objects tracked by gc)" for grown, objects in windows),
        )
    )


def test_one_engine_per_database_for_the_whole_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    first = db.open_store(url)
    assert db.open_store(url) is first
    assert db.open_store(url).kw["bind"] is first.kw["bind"]


def test_a_deleted_state_file_is_opened_afresh_and_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    first = db.open_store(url)
    with first.begin() as session:
        session.execute(sa.text("CREATE TABLE marker (x INTEGER)"))
    for path in tmp_path.glob("state.db*"):
        path.unlink()
    again = db.open_store(url)
    assert again.kw["bind"] is not first.kw["bind"]
    assert first.kw["bind"].pool.checkedin() == 0, "the old engine's connections were closed"
    tables = set(sa.inspect(again.kw["bind"]).get_table_names())
    assert "marker" not in tables and {"alembic_version", "sync_runs"} <= tables


def test_a_database_emptied_under_the_process_is_migrated_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = db.open_store(url).kw["bind"]
    models.Base.metadata.drop_all(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE alembic_version"))
    with db.open_store(url)() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(models.SyncRun)) == 0


def test_in_memory_databases_are_never_shared() -> None:
    assert db.open_store("sqlite://").kw["bind"] is not db.open_store("sqlite://").kw["bind"]


def test_beyond_the_limit_the_least_recently_opened_engine_is_disposed(tmp_path: Path) -> None:
    stores = db._SharedStores()
    urls = [f"sqlite:///{tmp_path / f'state-{n}.db'}" for n in range(stores._KEPT + 1)]
    first = stores.open(urls[0])
    with first() as session:
        session.execute(sa.text("SELECT 1"))
    assert first.kw["bind"].pool.checkedin() == 1
    for url in urls[1:]:
        stores.open(url)
    assert first.kw["bind"].pool.checkedin() == 0, "disposed: its connection closed"
    assert stores.open(urls[0]) is not first
    assert stores.open(urls[-1]) is stores.open(urls[-1])


def test_postgresql_engines_still_check_connections_before_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema, "upgrade", lambda engine: None)  # no server here: only the engine's options
    sessions = db._SharedStores().open("postgresql://adapter@127.0.0.1:1/adapter")
    assert sessions.kw["bind"].pool._pre_ping is True
