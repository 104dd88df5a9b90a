"""A real PostgreSQL server for the test session: temp dir, free port, thrown away at exit.

The store must work on PostgreSQL as well as SQLite (issue 7), and only a real
server shows the differences that matter (string lengths enforced, timezone-
aware timestamps, advisory locks, concurrent migrations).  This starts one
server per test session with ``initdb`` + ``pg_ctl`` from the Debian package
(``/usr/lib/postgresql/<version>/bin``), installs the package first when the
binaries are missing (CI runs on a fresh machine as root), and hands out a
fresh database per test.

PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` user the Debian package creates (``runuser``); as anyone else it
runs as that user.  Authentication is ``trust`` on 127.0.0.1 only.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from debian import apt_install

PREFERRED_VERSION = "15"
# Any password works with trust authentication; a recognizable one lets tests
# check that it never reaches a log line or a message.
PASSWORD = "pg-test-password-never-logged"  # noqa: S105


def _find_bin_dir() -> Path | None:
    root = Path("/usr/lib/postgresql")
    preferred = root / PREFERRED_VERSION / "bin"
    if (preferred / "initdb").exists():
        return preferred
    candidates = sorted(root.glob("*/bin/initdb"), key=lambda p: p.parent.parent.name, reverse=True)
    return candidates[0].parent if candidates else None


def _install() -> None:
    """``apt-get install postgresql`` (fresh CI machine, as root)."""
    output = apt_install("postgresql", installed=lambda: _find_bin_dir() is not None)
    if _find_bin_dir() is None:
        raise RuntimeError(
            f"PostgreSQL server binaries not found; install them: apt-get install -y postgresql. {output}"
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    bin_dir: Path
    data_dir: Path
    port: int
    as_postgres: bool

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = self.data_dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {result.stdout}{result.stderr}{tail}")

    def start(self, durable: bool = False) -> None:
        """initdb and start; ``durable`` keeps PostgreSQL's own defaults (fsync, synchronous commits).

        Tests run without them (nothing to keep after the session); a
        benchmark runs with them, as a site's database would.
        """
        self._run("initdb", "-D", str(self.data_dir / "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-locale", "--no-sync")  # fmt: skip
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c max_connections=100"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data_dir / "data"), "-l", str(self.data_dir / "server.log"),
                  "-w", "-t", "60", "-o", options, "start")  # fmt: skip

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data_dir / "data"), "-m", "immediate", "-w", "stop")
        except RuntimeError:
            pass
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as connection:  # fmt: skip
            connection.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return self.url(name)


@functools.cache
def server(durable: bool = False) -> PostgresServer:
    """The session's server, started on first use and stopped when the process exits (see ``start``)."""
    bin_dir = _find_bin_dir()
    if bin_dir is None:
        _install()
        bin_dir = _find_bin_dir()
        if bin_dir is None:
            raise RuntimeError("apt-get install postgresql left no /usr/lib/postgresql/*/bin/initdb")
    as_postgres = os.geteuid() == 0
    data_dir = Path(tempfile.mkdtemp(prefix="trial-adapter-pg-"))
    if as_postgres:
        shutil.chown(data_dir, user="postgres", group="postgres")
    instance = PostgresServer(bin_dir=bin_dir, data_dir=data_dir, port=_free_port(), as_postgres=as_postgres)
    atexit.register(instance.stop)
    instance.start(durable)
    return instance
