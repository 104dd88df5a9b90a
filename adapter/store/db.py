"""Opening the state database: one engine per database for the whole process.

SQLite is the default (one file next to the config, WAL journal so the
console can read while a sync writes); PostgreSQL works by URL.  Every open
brings the schema up to date (``schema.upgrade``), so an upgraded adapter
migrates the site's existing state in place; ``access`` creates the SQLite
file privately and explains a database that will not open.

``open_store`` keeps one engine per database for the whole process (see
``_SharedStores``): ``job.run_once`` opens the store every pass, and an
engine made per open was never let go (issue 13, item 8).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from adapter import errors
from adapter.store import access, schema

WAL_CHECKPOINT_PAGES = 20_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Deleted and overwritten content is zeroed, not left in free pages: a
    # body stripped from the state (a patient who left the roster, a resource
    # retired) must not stay readable in the file.
    cursor.execute("PRAGMA secure_delete=ON")
    # Checkpoint the journal every 20,000 pages (80 MB) instead of SQLite's
    # 1,000: a first load dirties index pages all over the file, and each
    # checkpoint copies them back and flushes the disk.  Fewer checkpoints
    # write a page that changed in many commits once: 10.8 -> 6.0 s of
    # commits at 3,000 patients (bench/memory_bench.py), same memory.
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    cursor.close()


def create_engine(url: str) -> Engine:
    """An engine for ``url``; for SQLite the folder is created and WAL switched on.

    A bare ``postgresql://`` URL means psycopg 3 (the driver we ship), not
    SQLAlchemy's default psycopg2; server connections are checked before use
    because a months-long service outlives database restarts.
    """
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            url = "postgresql+psycopg://" + url.removeprefix(bare)
    try:
        if url.startswith("sqlite:///") and not url.endswith(":memory:"):
            access.make_private_database(Path(url.removeprefix("sqlite:///").split("?", 1)[0]))
        options: dict[str, Any] = {} if url.startswith("sqlite") else {"pool_pre_ping": True}
        engine = sa.create_engine(url, future=True, **options)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, OSError) as exc:
        raise errors.StoreError(f"store.url {access.redact(url)!r} cannot be used: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def open_store(url: str) -> sessionmaker[Session]:
    """Open (and migrate) the state database; return a session factory.

    The same URL gives the same engine and factory for the life of the
    process (``_SharedStores``), migrated when first opened and again
    whenever the database is not at the newest revision.
    """
    return _stores.open(url)


# The database's migration revision, alembic's own table; one statement, built
# once: alembic's MigrationContext makes a new Table per call, and each new Table
# is a new entry in the engine's compiled cache.
_REVISION: sa.Select[tuple[Any]] = sa.select(sa.column("version_num")).select_from(
    sa.table("alembic_version")
)


class _SharedStores:
    """One engine (and session factory) per database URL, for the whole process.

    ``job.run_once`` opens the store every pass, and an engine made per open
    brought a new SQLAlchemy dialect each time.  The ORM keeps the INSERTs
    and UPDATEs it compiles for a flush in each mapper's ``_compiled_cache``,
    keyed by the dialect, so every pass added compiled statements and pinned
    its dialect with its type memos: tracemalloc, passes 10 to 30 of the
    demo site in one process, ~88 KB more per pass, all of it under
    ``Compiled.__init__`` and ``TypeEngine._dialect_info`` (issue 13,
    item 8).  Each old engine also kept its SQLite connection and page cache
    open until a full garbage collection broke its cycles.  One engine per
    URL compiles each statement once.

    A SQLite file replaced or deleted under the process (a restore, a test
    starting afresh) gets a new engine, as does the ``_KEPT + 1``-th URL:
    the least recently opened one is disposed (closing its idle connections;
    whoever still holds it reconnects on its next use).  In-memory SQLite
    databases are never shared: each open is a new, empty database, as before.
    """

    _KEPT = 8  # a process uses one state database; tests open many, one after the other

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: OrderedDict[str, tuple[sessionmaker[Session], tuple[int, int] | None]] = OrderedDict()
        self._head: str | None = None

    def open(self, url: str) -> sessionmaker[Session]:
        with self._lock:
            kept = self._open.get(url)
            if kept is not None:
                sessions, identity = kept
                engine = sessions.kw["bind"]
                if identity == _file_identity(engine) and self._at_head(engine):
                    self._open.move_to_end(url)
                    return sessions
                del self._open[url]
                engine.dispose()
            engine = create_engine(url)
            try:
                schema.upgrade(engine)
            except BaseException:
                engine.dispose()
                raise
            sessions = sessionmaker(engine, expire_on_commit=False)
            if _in_memory(engine):
                return sessions
            self._open[url] = (sessions, _file_identity(engine))
            while len(self._open) > self._KEPT:
                _, (evicted, _) = self._open.popitem(last=False)
                evicted.kw["bind"].dispose()
            return sessions

    def _at_head(self, engine: Engine) -> bool:
        """Whether the database is at the newest migration (one SELECT), so opening it again needs none."""
        if self._head is None:
            self._head = schema.head_revision()
        try:
            with engine.connect() as connection:
                return list(connection.scalars(_REVISION)) == [self._head]
        except sa.exc.DBAPIError:
            return False  # no alembic_version table: opened afresh, which migrates or says what is wrong


def _file_identity(engine: Engine) -> tuple[int, int] | None:
    """(device, inode) of a SQLite database file; None for other databases or no file."""
    database = access.sqlite_file(engine)
    if database is None:
        return None
    try:
        info = database.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _in_memory(engine: Engine) -> bool:
    """A SQLite database that lives only as long as its connection."""
    database = engine.url.database or ""
    return engine.dialect.name == "sqlite" and (
        database in ("", ":memory:") or "mode=memory" in engine.url.render_as_string()
    )


_stores = _SharedStores()
