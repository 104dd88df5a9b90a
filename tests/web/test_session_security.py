"""Issue 14: sessions the server can end, a login limit that holds in parallel, proxy headers by trust.

Each test replays what an attacker would: a cookie copied before logout, a
password change or a disable; a session left idle; 40 guesses sent at once;
"four guesses, then log in to my own account"; an ``X-Forwarded-For`` header
invented by a client that is not the configured proxy.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pydantic
import pytest
import sqlalchemy as sa
import time_machine
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from adapter import config as config_mod
from adapter.cli import main
from adapter.store import db, models
from adapter.web import accounts
from adapter.web.app import create_app
from adapter.web.sessions import COOKIE_NAME
from adapter.web.throttle import LoginThrottle

from .conftest import PASSWORD, csrf_token, fix_file, issue_link, login, text_or_none
from .test_cli import write_config

NEW_PASSWORD = "another-long-password"  # noqa: S105  (test users only)


def post_login(
    client: TestClient, username: str, password: str, headers: dict[str, str] | None = None
) -> int:
    token = csrf_token(client)
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        headers=headers or {},
        follow_redirects=False,
    )
    if response.status_code == 303:
        client.cookies.clear()  # back to anonymous for the next attempt
    return response.status_code


def with_console(config: config_mod.Config, **changes: Any) -> config_mod.Config:
    """The config with ``[console]`` keys changed, validated like a TOML file would be."""
    console = config_mod.ConsoleConfig.model_validate(config.console.model_dump() | changes)
    return config.model_copy(update={"console": console})


def session_rows(config: config_mod.Config, username: str) -> list[models.SessionRow]:
    with db.open_store(config.store.url)() as session:
        user = accounts.find_user(session, username)
        assert user is not None
        return list(session.scalars(sa.select(models.SessionRow).where(models.SessionRow.user_id == user.id)))


# --- sessions end on the server -------------------------------------------------------------


def test_a_cookie_copied_before_logout_opens_nothing_afterwards(
    client: TestClient, console_config: config_mod.Config
) -> None:
    login(client, "dana")
    page = issue_link(client, "lis|0045 (", "kind=unknown_code")
    form_token = csrf_token(client, page)
    copied = client.cookies[COOKIE_NAME]
    other_browser = TestClient(client.app)
    login(other_browser, "dana")
    assert other_browser.get("/", follow_redirects=False).status_code == 200

    assert client.post("/logout", data={"csrf_token": form_token}, follow_redirects=False).status_code == 303
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, copied)
    refused = client.get("/", follow_redirects=False)
    assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
    fix = client.post(page + "/map-code", data={"concept": "creatinine", "csrf_token": form_token})
    assert fix.status_code == 401 and "session has ended" in fix.text
    assert text_or_none(fix_file(console_config)) is None, "the fix was not made"
    assert other_browser.get("/", follow_redirects=False).status_code == 303, "logout ends every session"
    assert {row.revoked_why for row in session_rows(console_config, "dana")} == {"logout"}


def test_a_new_password_or_disabling_ends_sessions_for_good(
    client: TestClient, console_config: config_mod.Config
) -> None:
    store = db.open_store(console_config.store.url)
    login(client, "dana")
    copied = client.cookies[COOKIE_NAME]
    with store.begin() as session:
        accounts.set_password(session, "dana", NEW_PASSWORD, actor="test")
    client.cookies.set(COOKIE_NAME, copied)
    assert client.get("/", follow_redirects=False).status_code == 303

    client.cookies.clear()
    login(client, "dana", NEW_PASSWORD)
    copied = client.cookies[COOKIE_NAME]
    with store.begin() as session:
        accounts.set_disabled(session, "dana", True, actor="test")
    assert client.get("/", follow_redirects=False).status_code == 303
    with store.begin() as session:
        accounts.set_disabled(session, "dana", False, actor="test")
    client.cookies.set(COOKIE_NAME, copied)
    assert client.get("/", follow_redirects=False).status_code == 303, "enabling does not revive old cookies"
    whys = sorted(row.revoked_why or "" for row in session_rows(console_config, "dana"))
    assert whys == ["disabled", "password"]


def test_a_role_change_keeps_the_session_and_applies_at_once(
    client: TestClient, console_config: config_mod.Config
) -> None:
    login(client, "dana")
    page = issue_link(client, "lis|0045 (", "kind=unknown_code")
    token = csrf_token(client, page)
    with db.open_store(console_config.store.url).begin() as session:
        accounts.set_role(session, "dana", accounts.Role.VIEWER, actor="test")
    assert client.get("/", follow_redirects=False).status_code == 200
    answer = client.post(page + "/map-code", data={"concept": "creatinine", "csrf_token": token})
    assert answer.status_code == 403


def test_an_idle_session_ends(client: TestClient, console_config: config_mod.Config) -> None:
    idle = console_config.console.idle_minutes
    with time_machine.travel(dt.datetime(2031, 3, 3, 9, 0, tzinfo=dt.UTC), tick=False) as clock:
        login(client, "dana")
        for _ in range(3):  # a data manager at work: each page moves the deadline on
            clock.shift(dt.timedelta(minutes=idle - 1))
            assert client.get("/", follow_redirects=False).status_code == 200
        clock.shift(dt.timedelta(minutes=idle + 1))
        refused = client.get("/sites/demo-east", follow_redirects=False)
        assert refused.status_code == 303
        assert refused.headers["location"] == "/login?next=%2Fsites%2Fdemo-east"
        login(client, "dana")
        assert client.get("/", follow_redirects=False).status_code == 200


# --- the login limit ------------------------------------------------------------------------


def test_parallel_wrong_passwords_cannot_pass_the_limit(client: TestClient) -> None:
    token = csrf_token(client)
    start = threading.Barrier(40)

    def guess(number: int) -> int:
        start.wait()
        return client.post(
            "/login",
            data={"username": "dana", "password": f"wrong-guess-{number:04d}", "csrf_token": token},
        ).status_code

    with ThreadPoolExecutor(max_workers=40) as pool:
        answers = list(pool.map(guess, range(40)))
    assert sorted(answers) == [401] * 5 + [429] * 35


def test_logging_in_clears_the_user_count_but_not_the_address_count(
    console_config: config_mod.Config,
) -> None:
    app = create_app(console_config, throttle=LoginThrottle(max_failures=5))
    here = TestClient(app, client=("192.0.2.10", 50000))
    elsewhere = TestClient(app, client=("192.0.2.20", 50000))
    assert [post_login(here, "dana", "wrong-password-1") for _ in range(4)] == [401] * 4
    assert post_login(here, "dana", PASSWORD) == 303
    # dana's own count starts again, from any address ...
    assert [post_login(elsewhere, "dana", "wrong-password-2") for _ in range(4)] == [401] * 4
    # ... but this address keeps its four failures: one more, and it pauses
    assert post_login(here, "otto", "wrong-password-3") == 401
    assert post_login(here, "vic", PASSWORD) == 429
    assert post_login(here, "dana", PASSWORD) == 429


def test_an_attempt_counts_while_it_runs_and_a_success_is_withdrawn() -> None:
    throttle = LoginThrottle(max_failures=2, window_seconds=60, clock=lambda: 0.0)
    first = throttle.attempt("user:dana", "addr:a")
    second = throttle.attempt("user:dana", "addr:a")
    assert not first.refused and not second.refused
    assert throttle.attempt("user:dana", "addr:b").refused, "two are running: the user is at the limit"
    throttle.succeeded(second, forgive="user:dana")
    assert throttle.retry_after("user:dana") == 0
    assert throttle.retry_after("addr:a") == 0, "the right attempt is withdrawn from the address"
    assert not throttle.attempt("user:otto", "addr:a").refused
    assert throttle.attempt("user:vic", "addr:a").refused, "the wrong one still counts there"


# --- proxy headers --------------------------------------------------------------------------


def test_forwarded_for_from_an_untrusted_client_is_ignored(console_config: config_mod.Config) -> None:
    app = create_app(console_config, throttle=LoginThrottle(max_failures=5))
    local = TestClient(app, client=("127.0.0.1", 50000))
    answers = [
        post_login(local, f"user{n}", "wrong-password", {"X-Forwarded-For": f"203.0.113.{n}"})
        for n in range(6)
    ]
    assert answers == [401] * 5 + [429]
    local.cookies.clear()  # a new anonymous session, so a new cookie
    secure = local.get("/login", headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"]
    assert "Secure" not in secure


def test_forwarded_for_from_the_configured_proxy_is_believed(console_config: config_mod.Config) -> None:
    config = with_console(console_config, trusted_proxies=["127.0.0.1", "10.9.0.0/16"])
    app = create_app(config, throttle=LoginThrottle(max_failures=5))
    proxy = TestClient(app, client=("10.9.3.4", 50000))
    answers = [
        post_login(proxy, f"user{n}", "wrong-password", {"X-Forwarded-For": f"203.0.113.{n}"})
        for n in range(8)
    ]
    assert answers == [401] * 8, "each client behind the proxy has its own count"
    same = [
        post_login(proxy, f"user{n}", "wrong-password", {"X-Forwarded-For": "198.51.100.7"}) for n in range(6)
    ]
    assert same == [401] * 5 + [429]
    # a client cannot hide behind an address it puts in front of the proxy's own entry
    spoofed = [
        post_login(proxy, f"u{n}", "wrong-password", {"X-Forwarded-For": f"1.2.3.{n}, 198.51.100.7"})
        for n in range(2)
    ]
    assert spoofed == [429, 429]
    proxy.cookies.clear()
    cookie = proxy.get("/login", headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"]
    assert "Secure" in cookie


def test_trusted_proxies_must_be_addresses() -> None:
    assert config_mod.ConsoleConfig().trusted_proxies == []
    for wrong in ("*", "proxy.example", "10.0.0.1/8"):
        with pytest.raises(pydantic.ValidationError, match="not an IP address or network"):
            config_mod.ConsoleConfig(trusted_proxies=[wrong])


@pytest.mark.parametrize("trusted", [False, True])
def test_the_console_command_lets_uvicorn_trust_no_proxy_itself(
    console_config: config_mod.Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trusted: bool
) -> None:
    """Serve the app exactly as ``trial-adapter console`` hands it to uvicorn, from a local client."""
    path = write_config(console_config, tmp_path)
    if trusted:
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("[console]\n", '[console]\ntrusted_proxies = ["127.0.0.1"]\n'))
    served: dict[str, Any] = {}

    def run(app: Any, **options: Any) -> None:
        served["options"] = options
        server = uvicorn.Config(app, **{**options, "log_config": None})
        server.load()
        served["app"] = server.loaded_app

    monkeypatch.setattr(uvicorn, "run", run)
    adapter_log = logging.getLogger("adapter")
    saved = list(adapter_log.handlers), adapter_log.level, adapter_log.propagate
    result = CliRunner().invoke(main.app, ["console", "-c", str(path)])
    # the CLI pointed the adapter's logs at CliRunner's stderr, closed by now
    adapter_log.handlers[:], adapter_log.level, adapter_log.propagate = saved
    assert result.exit_code == 0, result.output
    assert served["options"]["proxy_headers"] is False
    local = TestClient(served["app"], client=("127.0.0.1", 50000))
    answers = [
        post_login(local, f"user{n}", "wrong-password", {"X-Forwarded-For": f"203.0.113.{n}"})
        for n in range(6)
    ]
    assert answers == ([401] * 6 if trusted else [401] * 5 + [429])
    local.cookies.clear()
    cookie = local.get("/login", headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"]
    assert ("Secure" in cookie) is trusted
