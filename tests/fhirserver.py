"""A real FHIR R4 server on 127.0.0.1 for integration tests: sekmet-fhir, in its own virtualenv.

``sekmet-fhir`` (PyPI, Apache-2.0, FastAPI + SQLite) pins FastAPI ranges
that may clash with ours, so it lives in its own virtualenv under
``.cache/sekmet-venv`` in the repository (git-ignored), created on first use
with ``python -m venv`` and ``pip install sekmet-fhir==0.1.1``; a fresh CI
machine therefore needs nothing but network access to PyPI once.  A file
lock keeps two test runs from building it at the same time.

Use it from any test folder's conftest::

    from fhirserver import fhir_server, fhir_server_factory  # noqa: F401

``fhir_server`` is one open (no auth) server for the whole session, for
tests that only read; ``fhir_server_factory()`` starts a fresh one (own data
folder, optional ``server_auth``) for tests that change data.  Both are
stopped at the end of the session.

Known sekmet behaviour the helpers respect: it ignores client-supplied
``meta.lastUpdated`` and ``versionId`` (data must change *through* the
server for incremental tests), builds ``next`` and file URLs from
``base_url`` (so the URL must match host and port exactly; a server behind
a proxy is started with the proxy's URL as ``public_base_url``), binds 0.0.0.0
unless ``host`` is set, and validates strictly unless ``validation.inbound``
is ``warn`` (the demo data carries deliberate messes).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
VENV = CACHE / "sekmet-venv"
PACKAGE = "sekmet-fhir==0.1.1"
MARKER = VENV / ".installed-sekmet-fhir-0.1.1"
DEMO_TYPES = ("Patient", "Observation", "MedicationAdministration", "Procedure")
START_TIMEOUT = 60.0


def sekmet_executable() -> Path:
    """The ``sekmet`` command, installing it into its own virtualenv the first time."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "sekmet-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be installing right now
        if not MARKER.exists():
            shutil.rmtree(VENV, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            subprocess.run(
                [
                    str(VENV / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    PACKAGE,
                ],
                check=True,
            )
            MARKER.write_text(PACKAGE + "\n")
    return VENV / "bin" / "sekmet"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class FhirServer:
    """One running sekmet instance and helpers to put data into it."""

    folder: Path
    server_auth: dict[str, Any] | None = None
    extra_settings: dict[str, Any] = field(default_factory=dict)  # e.g. {"validation": {"inbound": "off"}}
    # The base URL clients are told (next links, token endpoint), when they reach the server through
    # a proxy (tests/reliability/faultproxy.py); default: the server's own address.
    public_base_url: str | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/fhir"

    @property
    def log_file(self) -> Path:
        return self.folder / "server.log"

    def start(self) -> FhirServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        settings = {
            "host": "127.0.0.1",
            "port": self.port,
            "base_url": self.public_base_url or self.base_url,
            "data_dir": str(self.folder / "data"),
            "simulator": {"enabled": False},
            "validation": {"inbound": "warn"},
            "log_inbound": False,
            "server_auth": self.server_auth or {"types": ["none"]},
            **self.extra_settings,
        }
        config = self.folder / "settings.yaml"
        config.write_text(json.dumps(settings, indent=2))  # JSON is YAML
        executable = sekmet_executable()
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                [str(executable), "serve", "-c", str(config)],
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self._wait_until_up()
        return self

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"sekmet exited at start:\n{self.log_file.read_text()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.base_url}/metadata", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"sekmet did not answer /metadata in {START_TIMEOUT} s:\n{self.log_file.read_text()[-3000:]}"
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.session.close()

    # ------------------------------------------------------------------ data

    def transaction(
        self, entries: list[dict[str, Any]], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """POST a transaction Bundle; fail loudly with the server's answer."""
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        response = self.session.post(
            self.base_url,
            data=json.dumps(bundle),
            headers={"Content-Type": "application/fhir+json", **(headers or {})},
            timeout=120,
        )
        assert response.status_code == 200, response.text[:2000]
        return dict(response.json())

    def put_resources(self, resources: list[dict[str, Any]], headers: dict[str, str] | None = None) -> None:
        """Create or update resources with their own ids (PUT entries), in transactions of 500."""
        for start in range(0, len(resources), 500):
            chunk = resources[start : start + 500]
            self.transaction(
                [
                    {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                    for r in chunk
                ],
                headers,
            )

    def load_ndjson(
        self, folder: Path, types: tuple[str, ...] = DEMO_TYPES, headers: dict[str, str] | None = None
    ) -> int:
        """Load ``<Type>.ndjson`` files (e.g. ``adapter/demo/data/<site>/``); return the resources loaded.

        A resource id repeated in a file (the demo's planted duplicate line) is
        loaded once: a transaction must not touch one resource twice, and a
        second PUT would make version 2 where the NDJSON source sees version 1.
        Lines that are not JSON objects with an id are skipped (the NDJSON
        source reports those as issues; a server cannot hold them).
        """
        loaded = 0
        for resource_type in types:
            resources: dict[str, dict[str, Any]] = {}
            for path in sorted(folder.glob(f"{resource_type}*.ndjson")):
                for line in path.read_text(encoding="utf-8").splitlines():
                    with contextlib.suppress(ValueError):
                        resource = json.loads(line)
                        if isinstance(resource, dict) and resource.get("resourceType") == resource_type:
                            resources.setdefault(str(resource.get("id")), resource)
            self.put_resources([r for r in resources.values() if r.get("id")], headers)
            loaded += len(resources)
        return loaded

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        response = self.session.get(f"{self.base_url}/{resource_type}/{resource_id}", timeout=30)
        assert response.status_code == 200, response.text[:500]
        return dict(response.json())

    def update(self, resource: dict[str, Any]) -> dict[str, Any]:
        response = self.session.put(
            f"{self.base_url}/{resource['resourceType']}/{resource['id']}",
            data=json.dumps(resource),
            headers={"Content-Type": "application/fhir+json"},
            timeout=30,
        )
        assert response.status_code in (200, 201), response.text[:500]
        return dict(response.json())

    def delete(self, resource_type: str, resource_id: str) -> None:
        response = self.session.delete(f"{self.base_url}/{resource_type}/{resource_id}", timeout=30)
        assert response.status_code in (200, 204), response.text[:500]


class FhirServerFactory:
    """Starts servers on demand; stops them all at the end of the session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: list[FhirServer] = []

    def __call__(
        self, server_auth: dict[str, Any] | None = None, public_base_url: str | None = None
    ) -> FhirServer:
        server = FhirServer(
            self.root / f"server-{len(self.servers) + 1}",
            server_auth=server_auth,
            public_base_url=public_base_url,
        )
        self.servers.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="session")
def fhir_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServerFactory]:
    """``factory(server_auth=None)`` starts a fresh sekmet server (own data) and returns it."""
    factory = FhirServerFactory(tmp_path_factory.mktemp("fhir-servers"))
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def fhir_server(fhir_server_factory: FhirServerFactory) -> FhirServer:
    """One open FHIR server for the session; load what you need, do not change what others load."""
    return fhir_server_factory()
