"""A state database that cannot be opened: exit 6 with the path and the fix (issue 13, item 9).

Site IT teams follow docs/site-it.md as the unprivileged service user, so
the SQLite cases run the real CLI as such a user: as root, in a child that
drops to ``nobody`` after its imports (the interpreter itself may live in a
folder ``nobody`` cannot read); as anyone else, as that user with folders
made read-only.  The PostgreSQL password cases talk to a stand-in server
that asks for a password, the way a site's server does.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapter.cli.main import main
from adapter.store import db, schema

AS_USER = """
import os, sys
from adapter.cli.main import main
from adapter.store import db
import alembic.command, alembic.runtime.migration, alembic.operations, sqlite3  # loaded before dropping
uid, gid = int(sys.argv[1]), int(sys.argv[2])
if os.geteuid() != uid:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture
def site_user() -> tuple[int, int, str, str]:
    """(uid, gid, user, group) of the unprivileged user the commands run as."""
    entry = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    return entry.pw_uid, entry.pw_gid, entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder the site user can traverse (pytest's own tmp folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="trial-adapter-store-errors-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _config(base: Path, url: str) -> Path:
    path = base / "trial-adapter.toml"
    path.write_text(
        f'[store]\nurl = "{url}"\n[[sites]]\nid = "a"\ntimezone = "UTC"\nroster = "r.csv"\n'
        '[sites.source]\nkind = "ndjson"\npath = "data"\n[repository]\nkind = "file"\npath = "out"\n'
    )
    path.chmod(0o644)
    return path


def _run_as(user: tuple[int, int, str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", AS_USER, str(user[0]), str(user[1]), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _not_writable_for_site_user(path: Path) -> None:
    """Root-owned (as root) or read-only (otherwise): the site user cannot write it."""
    path.chmod(0o755 if path.is_dir() else 0o644)
    if os.geteuid() != 0:
        path.chmod(0o555 if path.is_dir() else 0o444)


def test_a_missing_state_folder_names_the_folder_and_how_to_create_it(
    base: Path, site_user: tuple[int, int, str, str]
) -> None:
    parent = base / "var-lib"
    parent.mkdir()
    _not_writable_for_site_user(parent)
    folder = parent / "trial-adapter"
    config = _config(base, f"sqlite:///{folder}/state.db")
    for command in (["db", "upgrade"], ["check"]):
        result = _run_as(site_user, *command, "-c", str(config))
        output = result.stdout + result.stderr
        assert result.returncode == 6, output
        assert f"the state database folder {folder} does not exist" in output
        user, group = site_user[2], site_user[3]
        assert f"install -d -m 0700 -o {user} -g {group} {folder}" in output
        assert "store.url" in output

    # The fix from the message, then the same command works and the lock file is private.
    folder.mkdir(mode=0o700)
    os.chown(folder, site_user[0], site_user[1])
    result = _run_as(site_user, "db", "upgrade", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    lock_file = folder / ("state.db" + schema.SQLITE_MIGRATION_LOCK_SUFFIX)
    assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600
    assert lock_file.stat().st_uid == site_user[0]


def test_a_state_folder_the_user_cannot_write_names_it_and_the_fix(
    base: Path, site_user: tuple[int, int, str, str]
) -> None:
    folder = base / "state"
    folder.mkdir()
    _not_writable_for_site_user(folder)
    result = _run_as(site_user, "db", "upgrade", "-c", str(_config(base, f"sqlite:///{folder}/state.db")))
    output = result.stdout + result.stderr
    assert result.returncode == 6, output
    assert f"cannot write to the state database folder {folder}" in output
    assert f"chown {site_user[2]}:{site_user[3]} {folder}" in output


def test_a_state_file_of_another_user_names_it_and_the_fix(
    base: Path, site_user: tuple[int, int, str, str]
) -> None:
    folder = base / "state"
    folder.mkdir()
    os.chown(folder, site_user[0], site_user[1])
    database = folder / "state.db"
    db.open_store(f"sqlite:///{database}").kw["bind"].dispose()  # e.g. `check` run as root first
    _not_writable_for_site_user(database)
    result = _run_as(site_user, "db", "upgrade", "-c", str(_config(base, f"sqlite:///{database}")))
    output = result.stdout + result.stderr
    assert result.returncode == 6, output
    assert f"cannot read and write the state database {database}" in output
    assert f"chown {site_user[2]}:{site_user[3]} {database}" in output


def test_a_file_that_is_not_a_database_is_exit_6_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "state.db"
    database.write_bytes(b"this is a config file, not a database\n" * 100)
    assert main(["db", "upgrade", "-c", str(_config(tmp_path, f"sqlite:///{database}"))]) == 6
    err = capsys.readouterr().err
    assert "file is not a database" in err and "store.url" in err and str(database) in err


# ------------------------------------------------------------------ PostgreSQL


class PasswordServer:
    """Speaks just enough of the PostgreSQL protocol to ask for a password and refuse it."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with client:
                try:
                    self._answer(client)
                except (OSError, struct.error):
                    pass

    @staticmethod
    def _read(client: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = client.recv(size - len(data))
            if not chunk:
                raise OSError("client left")
            data += chunk
        return data

    def _answer(self, client: socket.socket) -> None:
        while True:  # SSLRequest / GSSENCRequest: "no"; then the startup message
            (length,) = struct.unpack("!i", self._read(client, 4))
            body = self._read(client, length - 4)
            if struct.unpack("!i", body[:4])[0] in (80877103, 80877104):
                client.sendall(b"N")
                continue
            break
        client.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
        kind = self._read(client, 1)  # "p" with the password, if the client has one
        if kind != b"p":
            return
        (length,) = struct.unpack("!i", self._read(client, 4))
        self._read(client, length - 4)
        fields = b'SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user "trial_adapter"\0\0'
        client.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def password_server() -> Iterator[PasswordServer]:
    server = PasswordServer()
    yield server
    server.close()


def test_no_password_found_names_the_pgpass_file_libpq_read(
    tmp_path: Path,
    password_server: PasswordServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PGPASSFILE", raising=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    url = f"postgresql://trial_adapter@127.0.0.1:{password_server.port}/trial_adapter"
    assert main(["db", "upgrade", "-c", str(_config(tmp_path, url))]) == 6
    err = capsys.readouterr().err
    assert "no password supplied" in err
    assert f"{tmp_path / '.pgpass'}" in err and "does not exist" in err
    assert "PGPASSFILE" in err and "/etc/trial-adapter/environment" in err


def test_a_refused_password_names_the_file_and_never_shows_the_password(
    tmp_path: Path,
    password_server: PasswordServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = "s3cret-never-shown"  # noqa: S105
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{password_server.port}:trial_adapter:trial_adapter:{secret}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    url = f"postgresql://trial_adapter@127.0.0.1:{password_server.port}/trial_adapter"
    assert main(["db", "upgrade", "-c", str(_config(tmp_path, url))]) == 6
    err = capsys.readouterr().err
    assert "password authentication failed" in err
    assert f"{passfile} (PGPASSFILE)" in err and "check that one of its lines matches" in err
    assert secret not in err

    passfile.chmod(0o644)  # libpq ignores a password file others can read: say so
    with_url_password = f"postgresql://trial_adapter:{secret}@127.0.0.1:{password_server.port}/trial_adapter"
    assert main(["db", "upgrade", "-c", str(_config(tmp_path, with_url_password))]) == 6
    err = capsys.readouterr().err
    assert "group or world access" in err and "chmod 0600" in err
    assert secret not in err
