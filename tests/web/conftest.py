"""Console fixtures: a synced demo with a real fix to make, users, logged-in clients.

The demo is synced once per session into a template folder; each test gets
its own copy (state database, copied mapping folder, secrets), so fixes
write only into throwaway override files, never into the repository's
``mappings/``.  The copied east override lacks the local creatinine code,
so mapping it back in the console is a real fix that changes records.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from adapter import config as config_mod
from adapter import paths
from adapter.demo import site as demo_site
from adapter.mapping import overrides
from adapter.reconciliation import override_fix
from adapter.service import job
from adapter.store import db, models
from adapter.web import accounts
from adapter.web.app import create_app
from adapter.web.throttle import LoginThrottle

from support import write_test_secret

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice that it prefers httpx2; httpx is what we pin
    from fastapi.testclient import TestClient

PASSWORD = "correct-horse-battery-staple"  # noqa: S105  (test users only)
USERS = {
    "ada": accounts.Role.ADMIN,
    "dana": accounts.Role.DATA_MANAGER,
    "otto": accounts.Role.DATA_MANAGER,
    "vic": accounts.Role.VIEWER,
}
CREATININE_CODE = "http://hospital-east.example/fhir/lis|0045"
CREATININE_LINE = '"http://hospital-east.example/fhir/lis|0045" = "creatinine"     # 肌酐\n'
CREATININE_ISSUE = f"demo-east|unknown_code|code:{CREATININE_CODE}"
SODIUM_ISSUE = "demo-east|unknown_code|code:http://hospital-east.example/fhir/lis|0099"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
JOB_URL = re.compile(r"/jobs/[0-9a-f]{16}")
JOB_STATE = re.compile(r'data-testid="job-state"><span class="badge job-(\w+)"')


def fix_file(config: config_mod.Config, site: str = "demo-east") -> Path:
    """The site's own mapping fix file, where the console's fixes go."""
    return overrides.path_for(config.overrides_dir(), site)


def issue_status(config: config_mod.Config, key: str) -> str:
    """An issue's status as the state holds it now."""
    with db.open_store(config.store.url)() as session:
        row = session.get(models.IssueRow, key)
        assert row is not None
        return row.status


def text_or_none(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def sandbox_config(root: Path) -> config_mod.Config:
    """The demo config of a sandbox folder, with the sandbox's own mapping copy."""
    config = demo_site.demo_config(root / "work")
    return config.model_copy(
        update={"study": config.study.model_copy(update={"mappings": root / "mappings"})}
    )


@pytest.fixture(scope="session")
def console_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("console-template")
    shutil.copytree(paths.default_mappings_dir(), root / "mappings")
    override = root / "mappings" / "sites" / "demo-east.toml"
    text = override.read_text(encoding="utf-8")
    assert CREATININE_LINE in text
    override.write_text(text.replace(CREATININE_LINE, ""), encoding="utf-8")
    work = root / "work"
    work.mkdir()
    write_test_secret(work / "site-secret.key")
    config = sandbox_config(root)
    job.run_once(config, config.sites)
    sessions = db.open_store(config.store.url)
    with sessions.begin() as session:
        for name, role in USERS.items():
            accounts.add_user(session, name, PASSWORD, role, actor="test")
    sessions.kw["bind"].dispose()
    with sqlite3.connect(work / "state.db") as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return root


@pytest.fixture
def sandbox(console_template: Path, tmp_path: Path) -> Path:
    """A private copy of the synced demo: state, secrets and mappings."""
    root = tmp_path / "sandbox"
    shutil.copytree(console_template, root)
    return root


@pytest.fixture
def console_config(sandbox: Path) -> config_mod.Config:
    return sandbox_config(sandbox)


@pytest.fixture
def client(console_config: config_mod.Config) -> TestClient:
    app = create_app(console_config, throttle=LoginThrottle(max_failures=5))
    return TestClient(app)


def csrf_token(client: TestClient, path: str = "/login") -> str:
    match = CSRF_FIELD.search(client.get(path).text)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD) -> None:
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_token(client), "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def issue_link(client: TestClient, key_fragment: str, query: str = "") -> str:
    """The issue page URL of the worklist row whose text contains ``key_fragment``."""
    page = client.get(f"/?status=all&{query}").text
    for row in page.split("<tr>"):
        if key_fragment in row:
            match = re.search(r'href="(/issues/[0-9a-f]+)"', row)
            if match:
                return match.group(1)
    raise AssertionError(f"no worklist row with {key_fragment!r}")


def api_routes(app: Any) -> list[APIRoute]:
    """Every route the app serves, through included routers too (FastAPI nests them since 0.16x)."""
    found: list[APIRoute] = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):  # an included router: its own routes, same paths
            found.extend(api_routes(route.original_router))
    return found


def job_state(page: str) -> str:
    """``queued``, ``running``, ``done`` or ``failed``: the state a fix job's page shows."""
    match = JOB_STATE.search(page)
    assert match, "not a fix job's page"
    return match.group(1)


def started_job(response: Any) -> str:
    """The job page a fix's POST answered with (at once: 303 to ``/jobs/<id>``)."""
    assert response.status_code == 303, (response.status_code, response.text[:500])
    location = response.headers["location"]
    assert JOB_URL.fullmatch(location), location
    return str(location)


def finished_job(client: TestClient, job_url: str, timeout: float = 120) -> str:
    """Reload a fix job's page, as the browser does, until the job is done or failed; that page."""
    deadline = time.monotonic() + timeout
    while True:
        page = client.get(job_url)
        assert page.status_code == 200, page.text[:500]
        if job_state(page.text) in ("done", "failed"):
            return page.text
        assert time.monotonic() < deadline, f"the job at {job_url} did not finish"
        time.sleep(0.05)


def audit_link(job_page: str) -> str:
    """The audit entry a finished fix job's page links to."""
    match = re.search(r'<dt>Audit entry</dt><dd><a href="(/audit/\d+)"', job_page)
    assert match, "no audit entry on the job's page"
    return match.group(1)


def fix_and_wait(client: TestClient, page: str, action: str, data: dict[str, str] | None = None) -> str:
    """Post ``page``'s ``action`` form (``map-code``, ``undo``, …), wait for its job; the job's last page."""
    form = {**(data or {}), "csrf_token": csrf_token(client, page)}
    answer = client.post(f"{page}/{action}", data=form, follow_redirects=False)
    return finished_job(client, started_job(answer))


HOLD = 60  # seconds a held re-map waits at most, so a failing test cannot hang the run


class HeldRemap:
    """``remap_site`` that stops after reporting its first page, until released (or raises there)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, fail_with: Exception | None = None) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        self.fail_with = fail_with
        self.calls = 0
        real = override_fix.remap_site

        def remap(setup: Any, sessions: Any, **options: Any) -> Any:
            self.calls += 1
            report: Callable[[int, int], None] = options.pop("progress")

            def held(done: int, total: int) -> None:
                report(done, total)
                if done > 0 and self.calls == 1:  # the first fix only, after its first page
                    self.reached.set()
                    if self.fail_with is not None:
                        raise self.fail_with
                    assert self.release.wait(HOLD)

            return real(setup, sessions, progress=held, **options)

        monkeypatch.setattr(override_fix, "remap_site", remap)


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldRemap]:
    hold = HeldRemap(monkeypatch)
    yield hold
    hold.release.set()  # never leave a worker waiting after the test
