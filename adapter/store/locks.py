"""Per-site locks, so two adapter processes never sync the same site at once.

A site IT team may start ``trial-adapter sync --once`` by hand while the
service is running, or run a second service against the same PostgreSQL
database by mistake.  Two concurrent passes of one site would race on its
watermarks and outbox, so every pass runs under the site's lock; a pass that
cannot get it is skipped (the holder is doing the work).  The outbox drain
takes a lock of its own (``OUTBOX``) for the same reason.

Two implementations behind one ``try_acquire``:

- **PostgreSQL**: a session-level ``pg_try_advisory_lock`` on a 64-bit hash of
  the lock name, held on a dedicated connection.  The server drops it when
  the connection ends, so a killed process never leaves a stale lock
  (https://www.postgresql.org/docs/15/explicit-locking.html#ADVISORY-LOCKS).
- **SQLite** (and anything else): a lease row in ``site_locks``, inserted
  atomically (the primary key refuses a second holder), renewed by a heartbeat
  thread and taken over once it has expired.  A holder on this host whose
  process is gone (``kill -9``) is taken over at once, so a restart after a
  crash does not wait for the lease to run out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from adapter.store import models
from adapter.store.models import utcnow

log = logging.getLogger(__name__)

OUTBOX = "(outbox)"  # not a valid site id, so it never collides with one
SERVICE = "(service)"  # held by `trial-adapter run` while it runs, so `status` can tell it is up
LEASE = dt.timedelta(minutes=5)
HEARTBEAT = dt.timedelta(seconds=30)


class Lock(Protocol):
    """A held lock; leaving the ``with`` block releases it."""

    name: str

    @property
    def lost(self) -> bool:
        """True once the lock can no longer be vouched for: the holder should stop."""
        ...

    def release(self) -> None: ...

    def __enter__(self) -> Lock: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def holder_id() -> str:
    """``host:pid:token``: who holds a lease, and whether that process still lives."""
    return f"{socket.gethostname()[:120]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def try_acquire(sessions: sessionmaker[Session], name: str, *, lease: dt.timedelta = LEASE) -> Lock | None:
    """Take the lock called ``name`` (a site id or ``OUTBOX``); None when someone else holds it."""
    engine: Engine = sessions.kw["bind"]
    if engine.dialect.name == "postgresql":
        return AdvisoryLock.try_acquire(engine, name)
    return LeaseLock.try_acquire(engine, name, lease=lease)


def held_by_live_holder(engine: Engine, name: str) -> bool:
    """Whether a process that is still alive holds the lock ``name`` right now (read-only).

    For ``status``: a pass marked running whose site lock nobody alive holds
    was killed.  PostgreSQL drops an advisory lock with its connection, so a
    granted one in ``pg_locks`` has a live holder.  A lease row's holder is
    alive unless its lease expired or it names a process of this host that
    is gone; a holder on another host counts as alive until its lease runs out.
    """
    if engine.dialect.name == "postgresql":
        # A bigint advisory key shows as its high half in classid, its low half in objid, objsubid 1
        # (https://www.postgresql.org/docs/15/view-pg-locks.html).
        key = AdvisoryLock.key(name) & 0xFFFF_FFFF_FFFF_FFFF
        with engine.connect() as connection:
            held = connection.execute(
                sa.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    " AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"
                ),
                {"high": key >> 32, "low": key & 0xFFFF_FFFF},
            ).scalar()
        return bool(held)
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(models.SiteLock.holder, models.SiteLock.heartbeat_at).where(
                models.SiteLock.site == name
            )
        ).first()
    return row is not None and not _abandoned(row.holder, row.heartbeat_at, utcnow(), LEASE)


class _Heartbeat:
    """Calls ``beat`` every ``interval`` in a daemon thread until stopped."""

    def __init__(self, name: str, interval: float, beat: Callable[[], bool]) -> None:
        self._stop = threading.Event()
        self._beat = beat
        self._interval = interval
        self._thread = threading.Thread(target=self._run, name=f"lock-heartbeat:{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if not self._beat():
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        # The lock's heartbeat calls the lock (``beat`` is its bound method): a
        # cycle only a full collection frees, and a lock taken before a pass and
        # released after it was frozen with the heap (``adapter.sync.collector``).
        self._beat = _stopped


def _stopped() -> bool:
    return False


class AdvisoryLock:
    """A PostgreSQL session-level advisory lock on its own connection."""

    def __init__(self, name: str, key: int, connection: Connection) -> None:
        self.name = name
        self._key = key
        self._connection = connection
        self._guard = threading.Lock()  # the heartbeat and release share the connection
        self._lost = False
        self._heartbeat = _Heartbeat(name, HEARTBEAT.total_seconds(), self._check)

    @staticmethod
    def key(name: str) -> int:
        """A signed 64-bit key for ``name`` (advisory locks are keyed by bigint)."""
        digest = hashlib.sha256(f"trial-adapter/{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    @classmethod
    def try_acquire(cls, engine: Engine, name: str) -> AdvisoryLock | None:
        key = cls.key(name)
        connection = engine.connect()
        try:
            got = connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
            connection.commit()  # the lock is session-level: it outlives this transaction
        except BaseException:
            connection.close()
            raise
        if not got:
            connection.close()
            return None
        return cls(name, key, connection)

    @property
    def lost(self) -> bool:
        return self._lost

    def _check(self) -> bool:
        """The lock lives as long as its connection: make sure the connection still does."""
        with self._guard:
            if self._connection.closed:
                return False
            try:
                self._connection.execute(sa.text("SELECT 1"))
                self._connection.commit()
            except sa.exc.DBAPIError:
                log.error("lost the database connection holding a lock", extra={"lock": self.name})
                self._lost = True
                return False
        return True

    def release(self) -> None:
        self._heartbeat.stop()
        with self._guard:
            if self._connection.closed:
                return
            try:
                self._connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
                self._connection.commit()
            except sa.exc.DBAPIError:
                # Never hand a connection that may still hold the lock back to the pool:
                # closing it for good makes the server release the lock.
                self._connection.invalidate()
            finally:
                self._connection.close()

    def __enter__(self) -> AdvisoryLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class LeaseLock:
    """A lease row in ``site_locks``, renewed by a heartbeat until released."""

    def __init__(self, engine: Engine, name: str, holder: str, lease: dt.timedelta) -> None:
        self.name = name
        self.holder = holder
        self._engine = engine
        self._lost = False
        self._heartbeat = _Heartbeat(name, min(HEARTBEAT, lease / 4).total_seconds(), self._renew)

    @classmethod
    def try_acquire(cls, engine: Engine, name: str, *, lease: dt.timedelta = LEASE) -> LeaseLock | None:
        """Insert the lease row; if one is there, take it over only when it is abandoned.

        Both steps are single statements the database makes atomic: the
        primary key refuses a second insert, and the takeover updates only
        the row still naming the abandoned holder, so of two processes
        racing for it exactly one wins.
        """
        holder = holder_id()
        if cls._insert(engine, name, holder):
            return cls(engine, name, holder, lease)
        now = utcnow()
        with engine.connect() as connection:
            row = connection.execute(
                sa.select(models.SiteLock.holder, models.SiteLock.heartbeat_at).where(
                    models.SiteLock.site == name
                )
            ).first()
        if row is None:  # released in between
            return cls(engine, name, holder, lease) if cls._insert(engine, name, holder) else None
        old_holder, heartbeat_at = row
        if not _abandoned(old_holder, heartbeat_at, now, lease):
            return None
        with engine.begin() as connection:
            taken = connection.execute(
                sa.update(models.SiteLock)
                .where(models.SiteLock.site == name, models.SiteLock.holder == old_holder)
                .values(holder=holder, acquired_at=now, heartbeat_at=now)
            ).rowcount
        if taken != 1:
            return None  # another process took it over first
        log.warning("took over an abandoned lock", extra={"lock": name, "previous_holder": old_holder})
        return cls(engine, name, holder, lease)

    @staticmethod
    def _insert(engine: Engine, name: str, holder: str) -> bool:
        now = utcnow()
        try:
            with engine.begin() as connection:
                connection.execute(
                    sa.insert(models.SiteLock).values(
                        site=name, holder=holder, acquired_at=now, heartbeat_at=now
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True

    @property
    def lost(self) -> bool:
        return self._lost

    def _renew(self) -> bool:
        try:
            with self._engine.begin() as connection:
                renewed = connection.execute(
                    sa.update(models.SiteLock)
                    .where(models.SiteLock.site == self.name, models.SiteLock.holder == self.holder)
                    .values(heartbeat_at=utcnow())
                ).rowcount
        except sa.exc.OperationalError:
            return True  # database busy for a moment: the lease has minutes left, try next beat
        if renewed != 1:
            log.error("lost a lock lease to another process", extra={"lock": self.name})
            self._lost = True
            return False
        return True

    def release(self) -> None:
        self._heartbeat.stop()
        with self._engine.begin() as connection:
            connection.execute(
                sa.delete(models.SiteLock).where(
                    models.SiteLock.site == self.name, models.SiteLock.holder == self.holder
                )
            )

    def __enter__(self) -> LeaseLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _abandoned(holder: str, heartbeat_at: dt.datetime, now: dt.datetime, lease: dt.timedelta) -> bool:
    """An expired lease, or one held by a process of this host that no longer exists."""
    if now - heartbeat_at > lease:
        return True
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:120] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # another thread of this process: alive by definition
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, owned by another user
    return False
