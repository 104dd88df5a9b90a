"""Opening the state database and bringing its schema up to date.

SQLite is the default (one file next to the config, WAL journal so the
console can read while a sync writes); PostgreSQL works by URL.  The schema
is created and upgraded only by alembic migrations, run on every open, so an
upgraded adapter migrates the site's existing state in place.

``open_store`` keeps one engine per database for the whole process (see
``_SharedStores``): ``job.run_once`` opens the store every pass, and an
engine made per open was never let go (issue 13, item 8).
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import logging
import os
import pwd
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from adapter import errors, secret_files

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x7472_6961_6C2D_6462  # PostgreSQL advisory lock key ("trial-db") held while migrating
# SQLite: the file beside the database that migrating processes flock, e.g. state.db-migrate.lock
SQLITE_MIGRATION_LOCK_SUFFIX = "-migrate.lock"
MIGRATION_WAIT = 600.0  # seconds to wait for another process's migration before giving up


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
            _make_private_database(Path(url.removeprefix("sqlite:///").split("?", 1)[0]))
        options: dict[str, Any] = {} if url.startswith("sqlite") else {"pool_pre_ping": True}
        engine = sa.create_engine(url, future=True, **options)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, OSError) as exc:
        raise errors.StoreError(f"store.url {_redact(url)!r} cannot be used: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


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
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with _sqlite_migration_lock(engine):
        try:
            with engine.begin() as connection:
                if engine.dialect.name == "postgresql":
                    # Two adapter processes starting together must not both migrate.
                    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
        except sa.exc.DBAPIError as exc:
            raise errors.StoreError(_cannot_open(engine, exc)) from exc


def revisions(engine: Engine) -> tuple[str | None, str | None]:
    """(the database's migration revision, the newest this adapter knows): for ``db upgrade``."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except sa.exc.DBAPIError as exc:
        raise errors.StoreError(_cannot_open(engine, exc)) from exc
    return current, ScriptDirectory.from_config(cfg).get_current_head()


def _sqlite_file(engine: Engine) -> Path | None:
    """The database file of a SQLite engine; None for other databases and in-memory ones."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):  # a URI filename (``?uri=true``): leave it to SQLite
        return None
    return Path(database)


@contextlib.contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<database>-migrate.lock`` (mode 0600) while migrating SQLite."""
    database = _sqlite_file(engine)
    if database is None:
        yield
        return
    _check_sqlite_access(database)
    lock_path = database.with_name(database.name + SQLITE_MIGRATION_LOCK_SUFFIX)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise errors.StoreError(
            f"cannot create the migration lock file {lock_path}: {exc.strerror}. "
            + _access_fix(lock_path.parent)
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


def _make_private_database(database: Path) -> None:
    """The SQLite file and its folder, created readable by this user only (0600 / 0700).

    The database holds clinical values of the site's patients; created under
    the process umask (0644 from a shell) any local user could read it.
    SQLite gives its -wal and -shm files the database file's mode, so
    creating the empty file first (an empty file is an empty database)
    covers them too.  An existing file keeps its mode, with a warning when
    others can read it.
    """
    _make_state_folder(database.parent)
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        secret_files.warn_if_exposed(database, "state database")
    except OSError:
        pass  # an unwritable folder is diagnosed, with its fix, when the database is opened


def _make_state_folder(folder: Path) -> None:
    """Create the SQLite database's folder (0700), or say who must create it and how."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        user, group = _user()
        raise errors.StoreError(
            f"the state database folder {folder} does not exist and user {user} cannot create it "
            f"({exc.strerror}). Create it owned by the user the adapter runs as: "
            f"`install -d -m 0700 -o {user} -g {group} {folder}` (as root; the systemd unit's "
            "StateDirectory= creates it when the service starts), or check store.url"
        ) from exc


def _check_sqlite_access(database: Path) -> None:
    """The folder and the file must be writable: SQLite also creates -wal, -shm and lock files there."""
    folder = database.parent
    if not folder.is_dir():
        _make_state_folder(folder)
    if not _can(folder, os.W_OK | os.X_OK):
        raise errors.StoreError(
            f"user {_user()[0]} cannot write to the state database folder {folder} "
            f"({_owner_and_mode(folder)}); SQLite keeps its journal files beside the database. "
            + _access_fix(folder)
        )
    if database.exists() and not _can(database, os.R_OK | os.W_OK):
        user, group = _user()
        raise errors.StoreError(
            f"user {user} cannot read and write the state database {database} ({_owner_and_mode(database)}). "
            f"Give it to the user the adapter runs as: `chown {user}:{group} {database}` (as root), "
            "or check store.url"
        )


def _cannot_open(engine: Engine, exc: sa.exc.DBAPIError) -> str:
    """The message for a database that refused to open: what failed, where, and the fix."""
    url = engine.url
    reason = str(exc.orig)
    if url.password:
        reason = reason.replace(str(url.password), "***")  # never show the password, however it got there
    message = f"cannot open the state database {_redact(str(url))}: {reason.strip()}"
    database = _sqlite_file(engine)
    if database is not None:
        try:
            _check_sqlite_access(database)  # the likely cause, with its fix
        except errors.StoreError as diagnosis:
            return str(diagnosis)
        return (
            f"{message}. Check store.url, and that user {_user()[0]} can read and write {database} "
            f"and its folder {database.parent}"
        )
    if engine.dialect.name == "postgresql" and any(
        sign in reason for sign in ("password authentication failed", "no password supplied")
    ):
        return f"{message}. {_pgpass_hint()}"
    return message


def _pgpass_hint() -> str:
    """Where libpq looked for the password, and what may be wrong with that file (never its content)."""
    named = os.environ.get("PGPASSFILE")
    path = Path(named) if named else Path.home() / ".pgpass"
    source = "PGPASSFILE" if named else "the home folder of the user it runs as"
    if not path.exists():
        state = "does not exist"
    elif not _can(path, os.R_OK):
        state = f"cannot be read by user {_user()[0]} ({_owner_and_mode(path)})"
    elif path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        state = f"has group or world access ({_owner_and_mode(path)}), so libpq ignores it: chmod 0600 it"
    else:
        state = "exists; check that one of its lines matches this host, port, database and user"
    return (
        f"The adapter reads the password from {path} ({source}), which {state}. Put the password "
        "there, one line host:port:database:user:password, owned by the user the adapter runs as, "
        "mode 0600; or name another file in PGPASSFILE (for the systemd service, in "
        "/etc/trial-adapter/environment). Never put the password in store.url"
    )


def _can(path: Path, mode: int) -> bool:
    """``os.access`` for the effective user, the one that will open the file."""
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _access_fix(folder: Path) -> str:
    user, group = _user()
    return (
        f"Give the folder to the user the adapter runs as: `chown {user}:{group} {folder} && "
        f"chmod 0700 {folder}` (as root), or check store.url"
    )


def _owner_and_mode(path: Path) -> str:
    info = path.stat()
    try:
        owner = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        owner = str(info.st_uid)
    return f"owner {owner}, mode {stat.S_IMODE(info.st_mode):04o}"


def _user() -> tuple[str, str]:
    """The user and group this process runs as, by name (for commands to paste)."""
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    try:
        group = grp.getgrgid(os.getegid()).gr_name
    except KeyError:
        group = str(os.getegid())
    return user, group


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
                upgrade(engine)
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
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            self._head = ScriptDirectory.from_config(cfg).get_current_head()
        try:
            with engine.connect() as connection:
                return list(connection.scalars(_REVISION)) == [self._head]
        except sa.exc.DBAPIError:
            return False  # no alembic_version table: opened afresh, which migrates or says what is wrong


def _file_identity(engine: Engine) -> tuple[int, int] | None:
    """(device, inode) of a SQLite database file; None for other databases or no file."""
    database = _sqlite_file(engine)
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


def _redact(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"
