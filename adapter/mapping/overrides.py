"""The site's own mapping fix file: ``<overrides>/<site>.toml``.

A data manager's fix (``trial-adapter map``, the console) adds or changes
one line here.  The file belongs to the site, not to the adapter: it lives
in the site's state folder (``[study] overrides``, by default next to the
state database), never inside the installed package, which may be
read-only and is replaced by every upgrade.  ``adapter.mapping.catalog``
reads it last, over the mapping folder's ``sites/<site>.toml``.

Edits keep the comments and layout a person wrote, replace the file in one
step (a sync never reads half a mapping) and take a folder lock, so a
console fix and a CLI ``map`` never interleave.  A fix's edit (``edit``)
remembers the file as it was, so the caller can put it back when the new
mapping turns out invalid or the re-map fails; what a fix means for the
records and the audit log is ``adapter.reconciliation``'s business.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tomlkit

from adapter import errors
from adapter.mapping.catalog import Catalog

TABLES = ("codes", "units", "ignored_codes")

_TABLE_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_\-]+)\s*\]\s*(#.*)?$")


def path_for(overrides_dir: Path, site_id: str) -> Path:
    """The fix file of one site."""
    return overrides_dir / f"{site_id}.toml"


@dataclass(frozen=True)
class Writability:
    """Whether fixes can be stored, for ``check`` and for a clear refusal."""

    path: Path
    exists: bool
    writable: bool
    problem: str | None = None  # why not, with the fix


def writability(path: Path) -> Writability:
    """Can the fix file at ``path`` be created or replaced by this process?

    Replacing needs the folder to be writable (a new file is renamed over
    the old one); a folder that does not exist yet is created on the first
    fix, so its nearest existing parent must be writable.
    """
    folder = path.parent
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return Writability(path, False, False, f"{probe} is not a folder; set [study] overrides to a folder")
    if os.access(probe, os.W_OK | os.X_OK):
        return Writability(path, path.exists(), True)
    user = _user_name()
    return Writability(
        path,
        path.exists(),
        False,
        f"{probe} is not writable by {user}: mapping fixes could not be stored; make the folder "
        f"{folder} writable for {user} (e.g. `install -d -o {user} {folder}`) or set [study] overrides "
        "to a folder the service owns",
    )


def refuse_unwritable(path: Path) -> None:
    """Say where a fix would go and why it cannot, before anything is locked or changed."""
    verdict = writability(path)
    if not verdict.writable:
        raise errors.ConfigError(f"cannot store the fix in {path}: {verdict.problem}")


def _user_name() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return "this user"


def read_override(path: Path) -> dict[str, dict[str, str]]:
    """The three tables of a site override file ({} when the file does not exist)."""
    if not path.exists():
        return {}
    data = tomlkit.parse(path.read_text(encoding="utf-8")).unwrap()
    return {table: dict(data.get(table, {})) for table in TABLES}


def set_override(path: Path, table: str, key: str, value: str | None, *, note: str = "") -> str | None:
    """Set (or with ``value=None`` remove) one entry; return the value before.

    Comments and layout survive: an existing entry is changed in place by
    tomlkit; a new one becomes a new line right after the table's last
    entry (tomlkit would append it after the comment block that introduces
    the next table), with ``note`` as its end-of-line comment.
    """
    if not note.isprintable():
        # A line break would end the comment and write lines of its own into the file.
        raise errors.MappingError(
            f"{path}: the note for [{table}] {key!r} holds a line break or a control character; "
            "nothing was written"
        )
    text = path.read_text(encoding="utf-8") if path.exists() else _new_override_text(path.stem)
    document = tomlkit.parse(text)
    section = document.get(table)
    before = section.get(key) if section is not None else None
    if value is None:
        if section is not None and key in section:
            del section[key]
        new_text = tomlkit.dumps(document)
    elif before is not None and section is not None:
        item = tomlkit.item(value)
        if note:
            item.comment(note)
        section[key] = item
        new_text = tomlkit.dumps(document)
    else:
        new_text = _insert_line(text, table, _entry_line(key, value, note))
    check = tomlkit.parse(new_text).unwrap().get(table, {})
    if check.get(key) != value:  # pragma: no cover - a layout the line insert does not know
        raise errors.MappingError(f"{path}: could not write [{table}] {key!r}; edit the file by hand")
    write_atomically(path, new_text)
    return None if before is None else str(before)


def code_key(catalog: Catalog, code: str) -> tuple[str, str]:
    """The catalog's key for a fix's ``system|code``: the system as the catalog names it.

    A fix may name the system by its short name from ``[systems]``, as the
    mapping files do, so the key is read the way the catalog reads those files.
    """
    system, _sep, value = code.partition("|")
    return catalog.key_system(system), value


@dataclass(frozen=True)
class Edit:
    """One entry a fix changed, and the file as it was, so a failed fix can be put back."""

    path: Path
    before: str | None  # the entry's value before the edit
    old_text: str | None  # the whole file before (None: there was no file)

    def restore(self) -> None:
        """Put the file back as it was before the edit."""
        if self.old_text is None:
            self.path.unlink(missing_ok=True)
        else:
            write_atomically(self.path, self.old_text)


def edit(path: Path, table: str, key: str, value: str | None, *, author: str, on: dt.date) -> Edit:
    """Set (``value=None``: remove) one entry for a fix by ``author``, noting who and when.

    An ignored code's value is its reason already, and a removed line has
    nothing to note, so only a new or changed mapping gets the comment.
    The caller holds ``folder_lock`` and calls ``restore`` if the fix fails.
    """
    old_text = path.read_text(encoding="utf-8") if path.exists() else None
    note = f"by {author}, {on:%Y-%m-%d}" if value is not None and table != "ignored_codes" else ""
    try:
        before = set_override(path, table, key, value, note=note)
    except OSError as exc:
        raise errors.ConfigError(
            f"cannot store the fix in {path} ({exc.strerror or exc}); nothing was changed. "
            "Make the file and its folder writable for the adapter's user, or set [study] overrides"
        ) from exc
    return Edit(path, before, old_text)


def _new_override_text(site: str) -> str:
    return (
        f'# Mapping fixes of site "{site}": its local codes and unit spellings.\n'
        "# Written by `trial-adapter map` and the console; comments are kept.\n"
        "# It lives in the site's state folder, so upgrades of the adapter never touch it.\n\n"
        "[codes]\n\n[units]\n\n[ignored_codes]\n"
    )


def _entry_line(key: str, value: str, note: str) -> str:
    line = f"{tomlkit.key(key).as_string()} = {tomlkit.string(value).as_string()}"
    return f"{line}  # {note}" if note else line


def _insert_line(text: str, table: str, line: str) -> str:
    """``line`` after the last entry of ``[table]`` (after its header if empty; new table if absent)."""
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    current, header_at, last_entry = None, None, None
    for number, raw in enumerate(lines):
        match = _TABLE_HEADER.match(raw)
        if match:
            current = match.group(1)
            if current == table:
                header_at = number
            continue
        stripped = raw.strip()
        if current == table and stripped and not stripped.startswith("#"):
            last_entry = number
    if header_at is None:
        tail = "" if not lines or lines[-1].endswith(("\n", "\r")) else newline
        return text + tail + f"{newline}[{table}]{newline}{line}{newline}"
    at = (last_entry if last_entry is not None else header_at) + 1
    return "".join([*lines[:at], line + newline, *lines[at:]])


def write_atomically(path: Path, text: str) -> None:
    """Replace the file in one step, so a sync never reads half a mapping."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


@contextlib.contextmanager
def folder_lock(path: Path) -> Iterator[None]:
    """One fix at a time per mapping folder, across threads and processes.

    The console and a CLI ``map`` may run at once; each reads, edits and
    re-maps, so two interleaved fixes could lose one edit.  ``flock`` on the
    folder itself needs no lock file beside the mappings.
    """
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
