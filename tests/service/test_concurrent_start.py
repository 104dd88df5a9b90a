"""Several processes opening one fresh state database at the same moment (issue 13, item 7).

A service start and a ``sync --once`` (or two cron'd CLI runs) on a new SQLite
state used to race through the first migration: one of them failed with exit 6,
``table audit_log already exists``.  Each round here starts several real
processes that open the same fresh database at one agreed instant; all must
succeed and leave exactly the schema the models describe, on both backends.
"""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from adapter.store import db, models, schema

import pgserver

pytestmark = pytest.mark.slow  # seconds each: real processes or servers (README: fast local run)

PROCESSES = 5
ROUNDS = 4

# Each process waits for a shared start instant so that they (whose imports
# take different times) hit the empty database together: every other one as
# a command would (`trial-adapter db upgrade`), the rest as the library opens it.
OPEN_AT = """
import sys, time
from adapter.cli.main import main
from adapter.store import db
how, url, config, start_at = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
time.sleep(max(0.0, start_at - time.time()))
if how == "cli":
    sys.exit(main(["db", "upgrade", "-c", config]))
db.open_store(url)
print("ok", flush=True)
"""


def _open_together(url: str, folder: Path) -> list[subprocess.CompletedProcess[str]]:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "trial-adapter.toml"
    config.write_text(
        f'[store]\nurl = "{url}"\n[[sites]]\nid = "a"\ntimezone = "UTC"\nroster = "r.csv"\n'
        '[sites.source]\nkind = "ndjson"\npath = "data"\n[repository]\nkind = "file"\npath = "out"\n'
    )
    start_at = time.time() + 5  # after every interpreter has imported the adapter
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT, "cli" if n % 2 else "library", url, str(config), str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def _failures(results: list[subprocess.CompletedProcess[str]]) -> list[str]:
    return [
        result.stderr[-600:] or result.stdout[-600:]
        for result in results
        if result.returncode != 0
        or not (
            result.stdout.strip() == "ok" or "migrated from" in result.stdout or "already at" in result.stdout
        )
    ]


def _assert_schema(url: str) -> None:
    engine = db.create_engine(url)
    current, head = schema.revisions(engine)
    assert current == head
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), models.Base.metadata) == []
        versions = connection.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar()
    assert versions == 1, "one migration history, not one per process"
    engine.dispose()


def test_processes_starting_together_on_a_fresh_sqlite_file_all_succeed(tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        path = tmp_path / f"round-{round_}" / "state" / "state.db"
        url = f"sqlite:///{path}"
        failed = _failures(_open_together(url, path.parent.parent))
        assert failed == [], f"round {round_}: {len(failed)} of {PROCESSES} failed: {failed[0]}"
        _assert_schema(url)
        lock_file = path.parent / (path.name + schema.SQLITE_MIGRATION_LOCK_SUFFIX)
        assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600


def test_processes_starting_together_on_a_fresh_postgresql_database_all_succeed(tmp_path: Path) -> None:
    for round_ in range(2):
        url = pgserver.server().new_database()
        failed = _failures(_open_together(url, tmp_path))
        assert failed == [], f"round {round_}: {len(failed)} of {PROCESSES} failed: {failed[0]}"
        _assert_schema(url)
