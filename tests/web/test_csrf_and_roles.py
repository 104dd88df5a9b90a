"""Every write is CSRF-checked and refused to viewers; viewers see no source references.

The write routes are taken from the app itself, so a route added later is
covered without editing this test.
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from adapter import config as config_mod
from adapter.reconciliation import fixes
from adapter.store import db, models
from adapter.web import views

from .conftest import SODIUM_ISSUE, csrf_token, fix_file, issue_link, login, text_or_none

SESSION_ROUTES = {"/login", "/logout"}  # they change who is logged in, not data


def write_paths(client: TestClient, console_config: config_mod.Config) -> list[str]:
    """Every POST route the app mounts (``views.ROUTERS``), path parameters filled with real values."""
    sessions = db.open_store(console_config.store.url)
    entry = fixes.ignore_issue(sessions, SODIUM_ISSUE, "seeded for the role test", actor="dana")
    login(client, "ada")
    token = issue_link(client, "lis|0099 (").rsplit("/", 1)[1]
    values = {"token": token, "entry_id": str(entry.audit_id), "username": "dana"}
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    paths = []
    for router in views.ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute) and "POST" in route.methods:
                paths.append(re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], route.path))
    assert len(paths) >= 8, paths
    return paths


def state_snapshot(console_config: config_mod.Config) -> tuple[int, str, list[tuple[str, str]]]:
    with db.open_store(console_config.store.url)() as session:
        audit = session.scalar(sa.select(sa.func.count()).select_from(models.AuditEntry)) or 0
        issues = [
            (key, status)
            for key, status in session.execute(sa.select(models.IssueRow.key, models.IssueRow.status))
        ]
    override = text_or_none(fix_file(console_config)) or ""
    return int(audit), override, sorted(issues)


def test_every_post_without_a_csrf_token_is_refused(
    client: TestClient, console_config: config_mod.Config
) -> None:
    paths = write_paths(client, console_config)
    login(client, "ada")
    before = state_snapshot(console_config)
    for path in paths:
        response = client.post(
            path, data={"concept": "sodium", "reason": "x", "ucum": "mmol/L"}, follow_redirects=False
        )
        assert response.status_code == 403, path
        assert "CSRF" in response.text
    wrong = client.post(paths[-1], data={"csrf_token": "0" * 64}, follow_redirects=False)
    assert wrong.status_code == 403
    assert state_snapshot(console_config) == before
    assert client.get("/").status_code == 200  # still logged in: the refusal changed nothing


def test_a_post_from_another_origin_is_refused(client: TestClient) -> None:
    login(client, "ada")
    token = csrf_token(client, "/")
    response = client.post("/logout", data={"csrf_token": token}, headers={"origin": "https://evil.example"})
    assert response.status_code == 403


def test_a_viewer_gets_403_on_every_write(client: TestClient, console_config: config_mod.Config) -> None:
    paths = [p for p in write_paths(client, console_config) if p not in SESSION_ROUTES]
    login(client, "vic")
    before = state_snapshot(console_config)
    for path in paths:
        data = {"csrf_token": csrf_token(client, "/"), "concept": "sodium", "reason": "x", "ucum": "mmol/L"}
        response = client.post(path, data=data, follow_redirects=False)
        assert response.status_code == 403, path
    assert state_snapshot(console_config) == before


def test_a_viewer_sees_no_fix_forms_and_no_source_references(client: TestClient) -> None:
    login(client, "vic")
    assert "Observation/obs-" not in client.get("/").text
    issue = client.get(issue_link(client, "plausible range")).text
    assert '<form method="post" action="/issues/' not in issue
    assert "can look but not change" in issue
    assert "Observation/obs-" not in issue and "src-" in issue
    exported = client.get("/export/issues.csv").text
    assert "Observation/obs-" not in exported and "src-" in exported
    subject = client.get("/subjects/demo-east/NCT06507514-E-001").text
    assert "Observation/obs-" not in subject


def test_a_data_manager_sees_source_references(client: TestClient) -> None:
    login(client, "dana")
    assert "Observation/obs-" in client.get(issue_link(client, "plausible range")).text
    assert "Observation/obs-" in client.get("/subjects/demo-east/NCT06507514-E-001").text


@pytest.mark.parametrize(("user", "status"), [("vic", 403), ("dana", 403), ("ada", 200)])
def test_only_admins_manage_users(client: TestClient, user: str, status: int) -> None:
    login(client, user)
    assert client.get("/users").status_code == status
