"""Numbers in URLs are bounded: extreme values get 422, never a 500 (issue 14, finding 5).

``?page=9223372036854775807``, ``min_age_days`` of 10**20 and audit entry ids
past what the database binds once answered HTTP 500.  Every route the app
mounts is walked here: each of its query and path parameters gets each
extreme value, and a numeric one must answer 422; the parameters come from
the app itself, so a route added later is covered without editing this test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import annotated_types
from fastapi.testclient import TestClient

from adapter import config as config_mod
from adapter.reconciliation import fixes
from adapter.store import db

from .conftest import SODIUM_ISSUE, api_routes, csrf_token, issue_link, login

EXTREMES = (
    "9223372036854775807",  # 2**63 - 1: SQLite's largest integer, PostgreSQL's BIGINT
    "9223372036854775808",
    "-9223372036854775809",
    "1" + "0" * 30,
    "9" * 5000,  # longer than Python converts from a string by default
    "-1",
    "1e309",
    "NaN",
    "0x10",
)
# Parameters the worklist and its export read from the query string by name.
UNDECLARED = {"/": ("min_age_days", "status", "site", "text"), "/export/issues.csv": ("min_age_days",)}


def parameters(dependant: Any) -> Iterator[Any]:
    yield from dependant.query_params
    yield from dependant.path_params
    for sub in dependant.dependencies:
        yield from parameters(sub)


def test_every_numeric_parameter_declares_its_bounds(client: TestClient) -> None:
    numeric = [
        (route.path, field.name, field.field_info.metadata)
        for route in api_routes(client.app)
        for field in parameters(route.dependant)
        if field.field_info.annotation in (int, float)
    ]
    assert {name for _path, name, _bounds in numeric} >= {"page", "entry_id", "min_age_days"}
    for path, name, bounds in numeric:
        kinds = {type(bound) for bound in bounds}
        assert kinds & {annotated_types.Ge, annotated_types.Gt}, (path, name)
        assert kinds & {annotated_types.Le, annotated_types.Lt}, (path, name)


def test_every_route_answers_extreme_numbers_without_a_server_error(
    client: TestClient, console_config: config_mod.Config
) -> None:
    sessions = db.open_store(console_config.store.url)
    entry = fixes.ignore_issue(sessions, SODIUM_ISSUE, "for the walk", actor="dana")
    login(client, "ada")
    token = issue_link(client, "lis|0099 (", "status=all").rsplit("/", 1)[1]
    filled = {
        "token": token,
        "entry_id": str(entry.audit_id),
        "site": "demo-east",
        "subject_id": "NCT06507514-E-001",
        "username": "nobody-here",
    }
    tried = 0
    for route in api_routes(client.app):
        names = {field.name: field for field in parameters(route.dependant)}
        for name in dict.fromkeys((*names, *UNDECLARED.get(route.path, ()))):
            field = names.get(name)
            numeric = field is not None and field.field_info.annotation in (int, float)
            for value in EXTREMES:
                values = {**filled, name: value}
                path = re.sub(r"\{(\w+)\}", lambda m, v=values: v[m.group(1)], route.path)
                query = "" if "{" + name + "}" in route.path else f"?{name}={value}"
                for method in sorted(route.methods & {"GET", "POST"}):
                    if method == "GET":
                        response = client.get(path + query, follow_redirects=False)
                    else:
                        form = {"csrf_token": csrf_token(client, "/"), "reason": "x", "concept": "x"}
                        response = client.post(path + query, data=form, follow_redirects=False)
                    tried += 1
                    assert response.status_code < 500, (method, path + query, response.status_code)
                    if numeric or name == "min_age_days":
                        assert response.status_code == 422, (method, path + query, response.status_code)
                        assert "text/html" in response.headers["content-type"]  # the console's own page
                        assert value not in response.text or len(value) < 4  # never echoes the value
    assert tried > 200


def test_in_range_values_still_work(client: TestClient) -> None:
    login(client, "vic")
    assert client.get("/?page=2&min_age_days=30").status_code == 200
    assert client.get("/audit?page=1000000").status_code == 200
    assert client.get("/audit/2147483647").status_code == 404
    assert client.get("/export/issues.csv?min_age_days=36500").status_code == 200
