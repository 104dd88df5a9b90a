"""A site's first weeks, end to end, the way site IT installs and runs the adapter.

The adapter is built as a wheel and installed (not editable) into a virtual
environment that the site's service user cannot write, and every command
runs as that unprivileged user (``nobody`` when the tests run as root),
against a config folder it can only read and a state folder it owns.  Then
the site lives through what issue 13 found breaking in production:

configure and sync -> a data manager maps a local code (the fix must land in
the site's own folder, not in the read-only package, and take effect) ->
the wheel is upgraded (the fix must survive) -> an export file is emptied
(nothing may be retracted; an issue opens; the sync exits non-zero) -> the
deletion is accepted (now it is retracted) -> the trial repository is
switched and everything re-sent (the new repository holds every current
record exactly once, and a second resend sends nothing) -> the repository
token breaks (``sync --once`` exits 7 naming the error; ``check`` fails).

The new repository is a small real HTTP server on 127.0.0.1 that checks a
bearer token and counts what it receives.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from adapter import errors, paths

ROOT = Path(__file__).resolve().parents[2]
PIP = [sys.executable, "-m", "pip"]
SITE = "site-life"  # not a bundled demo site: its local codes start out unmapped
CREATININE = "http://hospital-east.example/fhir/lis|0045"
NOBODY = 65534

pytestmark = pytest.mark.slow


# ----------------------------------------------------------------- the new trial repository


@dataclass
class Repository:
    """What the HTTP repository holds: the last body per record, and how often each arrived."""

    token: str = "good-token"  # noqa: S105
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    puts: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(repository: Repository) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:  # keep the test output clean
            return

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {repository.token}":
                return True
            with repository.lock:
                repository.refused += 1
            self._answer(401, {"error": "invalid token"})
            return False

        def _answer(self, status: int, body: dict[str, Any] | None = None) -> None:
            data = json.dumps(body or {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # reachability and auth probes
            if self._authorized():
                self._answer(200, {"records": len(repository.records)})

        def do_HEAD(self) -> None:
            if self._authorized():
                self.send_response(200)
                self.end_headers()

        def do_OPTIONS(self) -> None:
            self.do_HEAD()

        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self._authorized():
                return
            record_id = self.path.rstrip("/").rsplit("/", 1)[-1]
            with repository.lock:
                repository.records[record_id] = json.loads(body)
                repository.puts[record_id] += 1
            self._answer(200)

        def do_DELETE(self) -> None:
            if not self._authorized():
                return
            with repository.lock:
                repository.records.pop(self.path.rstrip("/").rsplit("/", 1)[-1], None)
            self._answer(204)

    return Handler


@contextlib.contextmanager
def http_repository() -> Iterator[tuple[Repository, str]]:
    repository = Repository()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(repository))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield repository, f"http://127.0.0.1:{server.server_address[1]}/records"
    finally:
        server.shutdown()
        server.server_close()


# ----------------------------------------------------------------- the installation


@dataclass
class Install:
    """Folders laid out the way docs/site-it.md lays them out, under one temporary root."""

    root: Path
    venv: Path
    etc: Path  # config, roster, secrets: read-only for the service user
    var: Path  # the service user's state folder
    exports: Path
    repository: Path  # the file repository the site starts with

    @property
    def config(self) -> Path:
        return self.etc / "trial-adapter.toml"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``trial-adapter ARGS`` as the site's service user, from its state folder."""
        command = [str(self.venv / "bin" / "trial-adapter"), *args]
        if os.geteuid() == 0:
            command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *command]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.var), "LANG": "C.UTF-8", "COLUMNS": "250"}
        return subprocess.run(
            command, cwd=self.var, env=env, capture_output=True, text=True, timeout=300, check=False
        )

    def python_as_user(self, code: str) -> str:
        command = [str(self.venv / "bin" / "python"), "-c", code]
        if os.geteuid() == 0:
            command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *command]
        return subprocess.run(command, cwd=self.var, capture_output=True, text=True, check=True).stdout

    def write_config(self, repository: str) -> None:
        self.config.write_text(
            f"""
[store]
url = "sqlite:///{self.var / "state.db"}"
[privacy]
hmac_key_file = "{self.var / "secrets" / "site.key"}"
[[sites]]
id = "{SITE}"
timezone = "Asia/Shanghai"
roster = "roster.csv"
[sites.source]
kind = "ndjson"
path = "{self.exports}"
{repository}
""",
            encoding="utf-8",
        )


def build_wheel(source: Path, out: Path, version: str | None = None) -> Path:
    """The adapter's wheel; with ``version``, from a copy of the source that says so (an upgrade)."""
    if version is not None:
        copy = out / f"src-{version}"
        copy.mkdir(parents=True)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(source / name, copy / name)
        for folder in ("adapter", "mappings"):
            shutil.copytree(source / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "adapter/__init__.py"):
            path = copy / name
            path.write_text(path.read_text().replace('"0.1.0"', f'"{version}"'))
        source = copy
    target = out / "wheels"
    subprocess.run(
        [*PIP, "wheel", "-q", "--no-deps", "-w", str(target), str(source)], check=True, capture_output=True
    )
    wanted = version or "0.1.0"
    (wheel,) = [w for w in target.glob("trial_adapter-*.whl") if f"-{wanted}-" in w.name]
    return wheel


def read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def give_to_site_user(path: Path) -> None:
    if os.geteuid() == 0:
        for item in [path, *path.rglob("*")]:
            os.chown(item, NOBODY, NOBODY)


@pytest.fixture(scope="module")
def install() -> Iterator[Install]:
    root = Path(tempfile.mkdtemp(prefix="trial-adapter-site-life-"))
    root.chmod(0o755)
    try:
        wheel = build_wheel(ROOT, root)
        venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        # The dependencies come from the test environment; the adapter itself only from the wheel.
        (site_packages,) = (venv / "lib").glob("python3*/site-packages")
        (dependencies,) = Path(sys.executable).parent.parent.glob("lib/python3*/site-packages")
        (site_packages / "dependencies.pth").write_text(f"{dependencies}\n")
        subprocess.run(
            [*PIP, "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps", str(wheel)],
            check=True,
            capture_output=True,
        )
        read_only(venv)
        etc, var, exports, repository = root / "etc", root / "var", root / "exports", root / "repository"
        etc.mkdir()
        shutil.copytree(paths.demo_data_dir() / "demo-east", exports)
        shutil.move(exports / "roster.csv", etc / "roster.csv")
        (var / "secrets").mkdir(parents=True)
        (var / "secrets" / "site.key").write_text("a-site-secret-for-this-test-only-0123456789\n")
        (var / "secrets" / "site.key").chmod(0o600)
        repository.mkdir()
        for folder in (var, exports, repository):
            give_to_site_user(folder)
        found = Install(root, venv, etc, var, exports, repository)
        found.write_config(f'[repository]\nkind = "file"\npath = "{repository}"')
        yield found
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------- the site's life


def current_records(install: Install) -> dict[str, dict[str, Any]]:
    """The file repository's records by id."""
    found: dict[str, dict[str, Any]] = {}
    for path in install.repository.glob("*.ndjson"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                found[record["record_id"]] = record
    return found


def of_type(records: dict[str, dict[str, Any]], record_type: str) -> list[str]:
    return sorted(r for r, record in records.items() if record["record_type"] == record_type)


def words(result: subprocess.CompletedProcess[str]) -> str:
    return " ".join((result.stdout + result.stderr).split())


def test_a_sites_life_on_a_read_only_install(install: Install) -> None:
    # The package really is read-only for the service user, and it is the wheel that runs.
    location = install.python_as_user(
        "import adapter, os; print(adapter.__file__, os.access(adapter.__file__, os.W_OK))"
    )
    assert location.startswith(str(install.venv)) and location.split()[-1] == "False"

    checked = install.run("check", "-c", str(install.config))
    assert checked.returncode == 0, words(checked)
    fix_file = install.var / "mapping-overrides" / f"{SITE}.toml"
    assert str(fix_file) in words(checked) and "writable" in words(checked)

    first = install.run("sync", "--once", "-q", "-c", str(install.config))
    assert first.returncode == 0, words(first)
    records = current_records(install)
    assert of_type(records, "TreatmentCycle"), "the site's blinatumomab cycles reached the repository"

    # A data manager maps the site's local creatinine code.
    mapped = install.run("map", "code", CREATININE, "creatinine", "--site", SITE, "-c", str(install.config))
    assert mapped.returncode == 0, words(mapped)
    assert f"wrote {fix_file}" in words(mapped) and "1 issue resolved" in words(mapped)
    assert CREATININE in fix_file.read_text(encoding="utf-8")
    assert not list((install.venv).rglob(f"{SITE}.toml")), "nothing was written into the package"
    eligibility = of_type(current_records(install), "EligibilityAssessment")
    assert eligibility

    # The wheel is upgraded (by its owner); the site's fix survives and stays in effect.
    writable(install.venv)
    upgrade = build_wheel(ROOT, install.root, version="0.1.1")
    subprocess.run(
        [*PIP, "--python", str(install.venv / "bin" / "python"), "install", "-q", "--no-deps", str(upgrade)],
        check=True,
        capture_output=True,
    )
    read_only(install.venv)
    assert "0.1.1" in install.run("--version").stdout
    after_upgrade = install.run("sync", "--once", "-q", "-c", str(install.config))
    assert after_upgrade.returncode == 0, words(after_upgrade)
    assert CREATININE in fix_file.read_text(encoding="utf-8")
    listed = install.run("issues", "list", "-c", str(install.config), "--kind", "unknown_code")
    assert "lis|0045" not in words(listed)

    # The export job writes an empty MedicationAdministration file.
    export = install.exports / "MedicationAdministration.ndjson"
    cycles = of_type(current_records(install), "TreatmentCycle")
    administrations = export.read_bytes()
    export.write_bytes(b"")
    held = install.run("sync", "--once", "-q", "-c", str(install.config))
    assert held.returncode == errors.EXIT_RETRACTION_HELD, words(held)
    assert "accept-retraction" in words(held)
    assert of_type(current_records(install), "TreatmentCycle") == cycles
    issues = install.run("issues", "list", "-c", str(install.config), "--kind", "retraction_held")
    assert "MedicationAdministration" in words(issues)

    # The site confirms the administrations really were deleted.
    accepted = install.run(
        "accept-retraction", "--site", SITE, "--type", "MedicationAdministration",
        "--reason", "moved to the new pharmacy system", "-c", str(install.config),
    )  # fmt: skip
    assert accepted.returncode == 0, words(accepted)
    retracted = install.run("sync", "--once", "-q", "-c", str(install.config))
    assert retracted.returncode == 0, words(retracted)
    assert of_type(current_records(install), "TreatmentCycle") == []
    current = current_records(install)
    assert current

    # The trial's data centre moves the repository to an HTTP endpoint with a token.
    with http_repository() as (repository, url):
        token = install.var / "secrets" / "repository.token"
        token.write_text(repository.token + "\n")
        token.chmod(0o600)
        give_to_site_user(token)
        install.write_config(
            f'[repository]\nkind = "http"\nurl = "{url}"\n'
            f'[repository.auth]\nkind = "bearer"\ntoken_file = "{token}"'
        )
        switched = install.run("check", "-c", str(install.config))
        assert "push --resend" in words(switched), words(switched)
        resent = install.run("push", "--resend", "-c", str(install.config))
        assert resent.returncode == 0, words(resent)
        assert set(repository.records) == set(current)
        assert all(count == 1 for count in repository.puts.values())
        again = install.run("push", "--resend", "-c", str(install.config))
        assert again.returncode == 0, words(again)
        assert all(count == 1 for count in repository.puts.values()), "a second resend sends nothing"

        # The token is revoked; the administrations come back (new records) and must wait, loudly.
        repository.token = "rotated-at-the-data-centre"  # noqa: S105
        export.write_bytes(administrations)
        failed = install.run("sync", "--once", "-q", "-c", str(install.config))
        assert failed.returncode == errors.EXIT_DELIVERY, words(failed)
        assert "401" in words(failed) and "retry" in words(failed).lower()
        assert repository.token not in words(failed) and "good-token" not in words(failed)
        broken = install.run("check", "-c", str(install.config))
        assert broken.returncode == errors.EXIT_DELIVERY, words(broken)
