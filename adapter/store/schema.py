"""Bringing the state database's schema up to date, one process at a time.

The schema is created and upgraded only by alembic migrations, run on every
open, so an upgraded adapter migrates the site's existing state in place.
Two processes starting together on a new database must not both migrate:
PostgreSQL serializes them with an advisory lock, SQLite with a ``flock``
on a file beside the database (``upgrade`` says why).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from adapter import errors
from adapter.store import access

log = logging.getLogger("adapter.store.db")  # the name it logged under before the split

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x7472_6961_6C2D_6462  # PostgreSQL advisory lock key ("trial-db") held while migrating
# SQLite: the file beside the database that migrating processes flock, e.g. state.db-migrate.lock
SQLITE_MIGRATION_LOCK_SUFFIX = "-migrate.lock"
MIGRATION_WAIT = 600.0  # seconds to wait for another process's migration before giving up


def head_revision() -> str | None:
    """The newest migration revision this adapter knows."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def upgrade(engine: Engine) -> None:
    """Run every pending alembic migration against ``engine``, one process at a time.

    A service start and a ``sync --once`` (or two cron'd commands) on a new
    state database would otherwise both find it empty and both create the
    tables; the second one failed with ``table audit_log already exists``.
    PostgreSQL serializes them with a transaction-level advisory lock.  On
    SQLite a ``BEGIN EXCLUSIVE`` cannot: pysqlite and alembic manage the
    transaction themselves, and SQLite DDL is not transactional for alembic
    (``transactional_ddl = False``).  So the migrating process holds an
    exclusive ``flock`` on a file beside the database instead; the kernel
    drops it when the process dies, so a killed migration never blocks the
    next start.  Whoever waited then finds the schema at head and does nothing.
    """
    cfg = _alembic_config()
    with _sqlite_migration_lock(engine):
        try:
            with engine.begin() as connection:
                if engine.dialect.name == "postgresql":
                    # Two adapter processes starting together must not both migrate.
                    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
        except sa.exc.DBAPIError as exc:
            raise errors.StoreError(access.cannot_open_message(engine, exc)) from exc


def revisions(engine: Engine) -> tuple[str | None, str | None]:
    """(the database's migration revision, the newest this adapter knows): for ``db upgrade``."""
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except sa.exc.DBAPIError as exc:
        raise errors.StoreError(access.cannot_open_message(engine, exc)) from exc
    return current, head_revision()


@contextlib.contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<database>-migrate.lock`` (mode 0600) while migrating SQLite."""
    database = access.sqlite_file(engine)
    if database is None:
        yield
        return
    access.check_sqlite_access(database)
    lock_path = database.with_name(database.name + SQLITE_MIGRATION_LOCK_SUFFIX)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise errors.StoreError(
            f"cannot create the migration lock file {lock_path}: {exc.strerror}. "
            + access.access_fix(lock_path.parent)
        ) from exc
    try:
        _flock(fd, lock_path)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


def _flock(fd: int, lock_path: Path) -> None:
    """Wait (at most ``MIGRATION_WAIT``) for the exclusive lock; flock waits are not interruptible."""
    deadline = time.monotonic() + MIGRATION_WAIT
    waiting = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not waiting:
                log.info(
                    "another process is migrating the state database; waiting", extra={"lock": str(lock_path)}
                )
                waiting = True
            if time.monotonic() > deadline:
                raise errors.StoreError(
                    f"another process has been migrating the state database for {MIGRATION_WAIT:.0f} s "
                    f"(it holds {lock_path}); let it finish, or find it with `fuser {lock_path}`"
                ) from None
            time.sleep(0.05)
