"""Who may open the state database, and what to do when the adapter may not.

The SQLite file holds clinical values, so it is created readable by the
adapter's user only.  When a database will not open, the message says the
likely cause and the command that fixes it (a folder the user cannot write,
a file owned by root after a manual run, a ``.pgpass`` libpq ignores), with
the names of this process's user and group to paste.  None of this changes
what is opened; it only creates the file privately and explains failures.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adapter import errors, secret_files


def sqlite_file(engine: Engine) -> Path | None:
    """The database file of a SQLite engine; None for other databases and in-memory ones."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):  # a URI filename (``?uri=true``): leave it to SQLite
        return None
    return Path(database)


def make_private_database(database: Path) -> None:
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


def check_sqlite_access(database: Path) -> None:
    """The folder and the file must be writable: SQLite also creates -wal, -shm and lock files there."""
    folder = database.parent
    if not folder.is_dir():
        _make_state_folder(folder)
    if not _can(folder, os.W_OK | os.X_OK):
        raise errors.StoreError(
            f"user {_user()[0]} cannot write to the state database folder {folder} "
            f"({_owner_and_mode(folder)}); SQLite keeps its journal files beside the database. "
            + access_fix(folder)
        )
    if database.exists() and not _can(database, os.R_OK | os.W_OK):
        user, group = _user()
        raise errors.StoreError(
            f"user {user} cannot read and write the state database {database} ({_owner_and_mode(database)}). "
            f"Give it to the user the adapter runs as: `chown {user}:{group} {database}` (as root), "
            "or check store.url"
        )


def cannot_open_message(engine: Engine, exc: sa.exc.DBAPIError) -> str:
    """The message for a database that refused to open: what failed, where, and the fix."""
    url = engine.url
    reason = str(exc.orig)
    if url.password:
        reason = reason.replace(str(url.password), "***")  # never show the password, however it got there
    message = f"cannot open the state database {redact(str(url))}: {reason.strip()}"
    database = sqlite_file(engine)
    if database is not None:
        try:
            check_sqlite_access(database)  # the likely cause, with its fix
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


def access_fix(folder: Path) -> str:
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


def redact(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"
