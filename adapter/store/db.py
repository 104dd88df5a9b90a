"""Opening the state database and bringing its schema up to date.

SQLite is the default (one file next to the config, WAL journal so the
console can read while a sync writes); PostgreSQL works by URL.  The schema
is created and upgraded only by alembic migrations, run on every open, so an
upgraded adapter migrates the site's existing state in place.
"""

from __future__ import annotations

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

from adapter import errors

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x7472_6961_6C2D_6462  # PostgreSQL advisory lock key ("trial-db") held while migrating


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
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
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {} if url.startswith("sqlite") else {"pool_pre_ping": True}
        engine = sa.create_engine(url, future=True, **options)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, OSError) as exc:
        raise errors.StoreError(f"store.url {_redact(url)!r} cannot be used: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def upgrade(engine: Engine) -> None:
    """Run every pending alembic migration against ``engine``."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                # Two adapter processes starting together must not both migrate.
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    except sa.exc.OperationalError as exc:
        raise errors.StoreError(
            f"cannot open the state database {_redact(str(engine.url))}: {exc.orig}"
        ) from exc


def revisions(engine: Engine) -> tuple[str | None, str | None]:
    """(the database's migration revision, the newest this adapter knows): for ``db upgrade``."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except sa.exc.OperationalError as exc:
        raise errors.StoreError(
            f"cannot open the state database {_redact(str(engine.url))}: {exc.orig}"
        ) from exc
    return current, ScriptDirectory.from_config(cfg).get_current_head()


def open_store(url: str) -> sessionmaker[Session]:
    """Open (and migrate) the state database; return a session factory."""
    engine = create_engine(url)
    upgrade(engine)
    return sessionmaker(engine, expire_on_commit=False)


def _redact(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"
