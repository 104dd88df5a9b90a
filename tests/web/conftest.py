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
import warnings
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from adapter import config as config_mod
from adapter import paths
from adapter.demo import site as demo_site
from adapter.mapping import overrides
from adapter.service import job
from adapter.store import db
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


def fix_file(config: config_mod.Config, site: str = "demo-east") -> Path:
    """The site's own mapping fix file, where the console's fixes go."""
    return overrides.path_for(config.overrides_dir(), site)


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
