"""Logging in: hashed passwords, cookie flags, throttling, sessions that end when they should."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapter import config as config_mod
from adapter.store import db, models
from adapter.web import accounts
from adapter.web.app import create_app
from adapter.web.sessions import COOKIE_NAME, ConsoleSession, SessionCodec
from adapter.web.throttle import LoginThrottle

from .conftest import PASSWORD, csrf_token, login


def test_pages_need_a_login_and_come_back_after_it(client: TestClient) -> None:
    response = client.get("/sites/demo-east?x=1", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fsites%2Fdemo-east%3Fx%3D1"
    form = client.get(response.headers["location"]).text
    assert 'name="next" value="/sites/demo-east?x=1"' in form
    answer = client.post(
        "/login",
        data={
            "username": "dana",
            "password": PASSWORD,
            "csrf_token": csrf_token(client),
            "next": "/sites/demo-east",
        },
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/sites/demo-east"
    assert client.get("/sites/demo-east").status_code == 200


def test_passwords_are_stored_as_argon2_hashes(console_config: config_mod.Config) -> None:
    with db.open_store(console_config.store.url)() as session:
        hashes = list(session.scalars(sa.select(models.User.password_hash)))
    assert hashes and all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)


def test_session_cookie_is_httponly_lax_and_secure_over_https(console_config: config_mod.Config) -> None:
    plain = TestClient(create_app(console_config))
    cookie = plain.get("/login").headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    tls = TestClient(create_app(console_config), base_url="https://console.example")
    assert "Secure" in tls.get("/login").headers["set-cookie"]


def test_wrong_password_and_unknown_user_get_the_same_answer(client: TestClient) -> None:
    answers = []
    for username in ("dana", "nobody"):
        response = client.post(
            "/login",
            data={"username": username, "password": "wrong-password-1", "csrf_token": csrf_token(client)},
        )
        answers.append((response.status_code, "Wrong user name or password." in response.text))
    assert answers == [(401, True), (401, True)]


def test_login_is_throttled_after_repeated_failures(client: TestClient) -> None:
    for _ in range(5):
        client.post(
            "/login",
            data={"username": "dana", "password": "nope-nope-nope", "csrf_token": csrf_token(client)},
        )
    blocked = client.post(
        "/login", data={"username": "dana", "password": PASSWORD, "csrf_token": csrf_token(client)}
    )
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert "Too many failed logins" in blocked.text


def test_forged_or_tampered_cookies_are_ignored(
    client: TestClient, console_config: config_mod.Config
) -> None:
    forged = SessionCodec(b"x" * 40, max_age_seconds=3600).dumps(
        ConsoleSession(nonce="n", user_id=1, issued_at=2**31)
    )
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, forged)
    assert client.get("/", follow_redirects=False).status_code == 303
    client.cookies.clear()
    login(client, "dana")
    value = client.cookies[COOKIE_NAME]
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB"))
    assert client.get("/", follow_redirects=False).status_code == 303


def test_disabling_a_user_or_changing_the_password_ends_their_session(
    client: TestClient, console_config: config_mod.Config
) -> None:
    login(client, "dana")
    assert client.get("/").status_code == 200
    sessions = db.open_store(console_config.store.url)
    with sessions.begin() as session:
        accounts.set_password(session, "dana", "another-long-password", actor="test")
    assert client.get("/", follow_redirects=False).status_code == 303
    login(client, "dana", "another-long-password")
    with sessions.begin() as session:
        accounts.set_disabled(session, "dana", True, actor="test")
    assert client.get("/", follow_redirects=False).status_code == 303
    refused = client.post(
        "/login",
        data={"username": "dana", "password": "another-long-password", "csrf_token": csrf_token(client)},
    )
    assert refused.status_code == 401


def test_logout_ends_the_session_and_login_rotates_it(client: TestClient) -> None:
    client.get("/login")
    before = client.cookies[COOKIE_NAME]
    login(client, "vic")
    assert client.cookies[COOKIE_NAME] != before
    token = csrf_token(client, "/")
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


def test_login_never_redirects_off_site(client: TestClient) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = client.post(
            "/login",
            data={"username": "vic", "password": PASSWORD, "csrf_token": csrf_token(client), "next": target},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/"
        client.post("/logout", data={"csrf_token": csrf_token(client, "/")})


def test_pages_carry_security_headers(client: TestClient) -> None:
    headers = client.get("/login").headers
    assert "script-src" not in headers["content-security-policy"]
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"


def test_weak_passwords_and_duplicate_users_are_refused(console_config: config_mod.Config) -> None:
    sessions = db.open_store(console_config.store.url)
    with sessions.begin() as session:
        for name, password in (("newbie", "short"), ("dana", PASSWORD), ("bad name!", PASSWORD)):
            try:
                accounts.add_user(session, name, password, accounts.Role.VIEWER, actor="test")
            except accounts.AccountError:
                continue
            raise AssertionError(f"{name!r} was accepted")


def test_the_throttle_forgives_once_failures_leave_the_window() -> None:
    now = [0.0]
    throttle = LoginThrottle(max_failures=2, window_seconds=60, clock=lambda: now[0])
    assert not throttle.attempt("user:dana").refused
    assert throttle.retry_after("user:dana") == 0
    assert not throttle.attempt("user:dana").refused
    assert 0 < throttle.retry_after("user:dana", "addr:1.2.3.4") <= 61
    assert throttle.attempt("user:dana").refused
    now[0] = 61.0
    assert throttle.retry_after("user:dana") == 0


def test_sessions_expire() -> None:
    codec = SessionCodec(b"s" * 40, max_age_seconds=10)
    value = codec.dumps(ConsoleSession(nonce="n", user_id=1, issued_at=100))
    assert codec.loads(value, now=105) == ConsoleSession(nonce="n", user_id=1, issued_at=100)
    assert codec.loads(value, now=111) is None
    assert codec.loads("garbage", now=105) is None
