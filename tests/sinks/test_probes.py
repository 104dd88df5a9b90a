"""What ``check`` asks of each sink: reach the repository, try the credentials, write nothing.

HTTP is mocked with ``responses`` (refused credentials, unreachable, timeouts,
wrong endpoints); the fhir sink also meets a real FHIR server with bearer
auth on 127.0.0.1 (sekmet-fhir, tests/fhirserver.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from adapter import errors
from adapter.net import credentials
from adapter.protocol.records import RecordType
from adapter.sinks import identity, settings
from adapter.sinks.fhir import FhirSink
from adapter.sinks.file import FileSink
from adapter.sinks.http import HttpSink
from adapter.sinks.redcap import RedcapSink

from fhirserver import FhirServerFactory, fhir_server_factory  # noqa: F401

BASE = "https://trials.example.org/fhir"
API = "https://trials.example.org/api"
REDCAP = "https://redcap.example.org/api/"
TOKEN = "s3cret-probe-token"  # noqa: S105
CAPABILITY = {
    "resourceType": "CapabilityStatement",
    "fhirVersion": "4.0.1",
    "rest": [{"mode": "server", "interaction": [{"code": "transaction"}]}],
}


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPO_TOKEN", TOKEN)


def fhir_sink(url: str = BASE, **overrides: Any) -> FhirSink:
    raw: dict[str, Any] = {"kind": "fhir", "url": url, "auth": {"kind": "bearer", "token_env": "REPO_TOKEN"}}
    raw.update(overrides)
    return FhirSink(settings.FhirRepository.model_validate(raw))


def http_sink(url: str = API) -> HttpSink:
    return HttpSink(
        settings.HttpRepository.model_validate(
            {"kind": "http", "url": url, "auth": {"kind": "bearer", "token_env": "REPO_TOKEN"}}
        )
    )


def redcap_sink() -> RedcapSink:
    records = {t.value: {"skip": True} for t in RecordType}
    return RedcapSink(
        settings.RedcapRepository.model_validate(
            {"kind": "redcap", "url": REDCAP, "token_env": "REPO_TOKEN", "records": records}
        )
    )


def no_writes() -> None:
    assert all(call.request.method in ("GET", "HEAD", "OPTIONS") for call in responses.calls) or all(
        "content=version" in str(call.request.body) for call in responses.calls
    ), [call.request.method for call in responses.calls]


# ----------------------------------------------------------------- fhir


@responses.activate
def test_fhir_probe_reads_metadata_then_tries_the_token_with_a_count_only_search() -> None:
    responses.get(f"{BASE}/metadata", json=CAPABILITY)
    responses.get(f"{BASE}/Patient?_summary=count", json={"resourceType": "Bundle", "total": 0})
    probe = fhir_sink().probe()
    assert probe.ok and not probe.warning, probe
    assert "FHIR 4.0.1" in probe.detail and "credentials accepted" in probe.detail
    assert responses.calls[1].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in probe.detail
    no_writes()


@responses.activate
def test_fhir_probe_fails_when_the_search_refuses_the_token_even_if_metadata_is_public() -> None:
    responses.get(f"{BASE}/metadata", json=CAPABILITY)
    responses.get(
        f"{BASE}/Patient?_summary=count",
        status=401,
        json={"resourceType": "OperationOutcome", "issue": [{"diagnostics": f"bad token {TOKEN}"}]},
    )
    probe = fhir_sink().probe()
    assert not probe.ok
    assert "HTTP 401" in probe.detail and "[repository.auth]" in probe.detail
    assert TOKEN not in probe.detail, "a token the server echoes is blanked"


@responses.activate
def test_fhir_probe_fails_when_unreachable_or_slow_or_not_fhir() -> None:
    responses.get(f"{BASE}/metadata", body=requests.ConnectionError("[Errno 111] Connection refused"))
    probe = fhir_sink().probe()
    assert not probe.ok and "cannot reach the repository" in probe.detail

    responses.replace(responses.GET, f"{BASE}/metadata", body=requests.Timeout())
    probe = fhir_sink(timeout_seconds=5).probe()
    assert not probe.ok and "no answer within 5 s" in probe.detail

    responses.replace(responses.GET, f"{BASE}/metadata", body="<html>login</html>", status=200)
    probe = fhir_sink().probe()
    assert not probe.ok and "not a CapabilityStatement" in probe.detail


@responses.activate
def test_fhir_probe_warns_about_a_server_without_transactions_or_not_r4() -> None:
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement", "fhirVersion": "5.0.0"})
    responses.get(f"{BASE}/Patient?_summary=count", json={"resourceType": "Bundle"})
    probe = fhir_sink().probe()
    assert probe.ok and probe.warning
    assert "FHIR 5.0.0" in probe.detail and "transaction" in probe.detail


def test_fhir_probe_without_a_readable_token_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPO_TOKEN")
    with pytest.raises(errors.ConfigError, match="REPO_TOKEN is unset"):
        fhir_sink().probe()


def test_fhir_probe_against_a_real_server_with_bearer_auth(
    fhir_server_factory: FhirServerFactory,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = fhir_server_factory(server_auth={"types": ["bearer"], "tokens": [TOKEN]})
    probe = fhir_sink(server.base_url).probe()
    assert probe.ok and not probe.warning, probe
    assert "FHIR 4.0.1" in probe.detail

    monkeypatch.setenv("REPO_TOKEN", "a-revoked-token")
    probe = fhir_sink(server.base_url).probe()
    assert not probe.ok and "HTTP 401" in probe.detail
    assert "a-revoked-token" not in probe.detail


# ----------------------------------------------------------------- redcap


@responses.activate
def test_redcap_probe_exports_the_version_with_the_token() -> None:
    responses.post(REDCAP, body="14.0.1")
    probe = redcap_sink().probe()
    assert probe.ok and "REDCap 14.0.1" in probe.detail and "token is accepted" in probe.detail
    body = str(responses.calls[0].request.body)
    assert "content=version" in body and f"token={TOKEN}" in body
    assert "content=record" not in body, "nothing imported"


@responses.activate
def test_redcap_probe_fails_on_a_refused_token_or_a_wrong_url() -> None:
    responses.post(REDCAP, status=403, json={"error": "You do not have permissions to use the API"})
    probe = redcap_sink().probe()
    assert not probe.ok and "HTTP 403" in probe.detail and "permissions" in probe.detail
    assert TOKEN not in probe.detail

    responses.replace(responses.POST, REDCAP, body="<html>REDCap login</html>")
    probe = redcap_sink().probe()
    assert not probe.ok and "did not answer with a REDCap version" in probe.detail


# ----------------------------------------------------------------- http


@responses.activate
def test_http_probe_heads_the_base_url_and_takes_a_404_as_reachable() -> None:
    responses.head(API, status=404)
    probe = http_sink().probe()
    assert probe.ok and "HTTP 404" in probe.detail
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    no_writes()


@responses.activate
def test_http_probe_asks_with_get_when_head_is_not_allowed() -> None:
    responses.head(API, status=405)
    responses.get(API, status=200, json={})
    probe = http_sink().probe()
    assert probe.ok and "GET: HTTP 200" in probe.detail
    assert [call.request.method for call in responses.calls] == ["HEAD", "GET"]


@responses.activate
@pytest.mark.parametrize("status", [401, 403, 503])
def test_http_probe_fails_on_refused_credentials_and_server_errors(status: int) -> None:
    responses.head(API, status=status)
    probe = http_sink().probe()
    assert not probe.ok and f"HTTP {status}" in probe.detail


@responses.activate
def test_http_probe_fails_when_unreachable() -> None:
    responses.head(API, body=requests.ConnectionError("[Errno -2] Name or service not known"))
    probe = http_sink().probe()
    assert not probe.ok
    assert "cannot reach the repository (connection failed: host name not found: check [repository] url)" in (
        probe.detail
    )


# ----------------------------------------------------------------- file


def test_file_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    folder = tmp_path / "repository"
    folder.mkdir()
    probe = FileSink(folder).probe()
    assert probe.ok and "writable" in probe.detail
    assert list(folder.iterdir()) == []


def test_file_probe_accepts_a_missing_folder_that_can_be_created(tmp_path: Path) -> None:
    probe = FileSink(tmp_path / "not" / "yet").probe()
    assert probe.ok and "does not exist yet" in probe.detail
    assert list(tmp_path.iterdir()) == [], "nothing created"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_file_probe_fails_on_a_folder_it_cannot_write(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        probe = FileSink(folder).probe()
    finally:
        folder.chmod(0o700)
    assert not probe.ok and "cannot write to" in probe.detail


def test_file_probe_fails_on_a_file_where_the_folder_should_be(tmp_path: Path) -> None:
    (tmp_path / "repository").write_text("")
    probe = FileSink(tmp_path / "repository").probe()
    assert not probe.ok and "is not a folder" in probe.detail


# ----------------------------------------------------------------- identity and redaction


def test_a_repository_is_its_kind_and_normalized_location_never_its_credentials() -> None:
    plain = settings.FhirRepository(kind="fhir", url="https://trials.example.org/fhir")
    spelled = settings.FhirRepository.model_validate(
        {
            "kind": "fhir",
            "url": "https://someone:pw@Trials.Example.org:443/fhir/",
            "auth": {"kind": "bearer", "token_env": "OTHER_TOKEN"},
            "timeout_seconds": 5,
        }
    )
    assert identity.of(plain) == identity.of(spelled)
    assert identity.of(spelled).location == "https://trials.example.org/fhir"
    assert "pw" not in identity.of(spelled).location and len(identity.of(plain).fingerprint) == 64
    http = settings.HttpRepository(kind="http", url="https://trials.example.org/fhir")
    assert identity.of(http) != identity.of(plain), "another kind is another repository"
    other_port = settings.FhirRepository(kind="fhir", url="https://trials.example.org:8443/fhir")
    assert identity.of(other_port).location == "https://trials.example.org:8443/fhir"


def test_a_file_repository_is_its_resolved_folder(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    direct = settings.FileRepository(kind="file", path=tmp_path / "real")
    linked = settings.FileRepository(kind="file", path=tmp_path / "link" / ".." / "real")
    via_symlink = settings.FileRepository(kind="file", path=tmp_path / "link")
    assert identity.of(direct) == identity.of(linked) == identity.of(via_symlink)


def test_redaction_blanks_known_secrets_and_anything_shaped_like_a_credential() -> None:
    credentials.remember_secret("tok-known-1234")
    text = credentials.redacted(
        "PUT https://bob:hunter2@x.org/a?access_token=abc123&x=1: echoed tok-known-1234; "
        "Authorization: Bearer eyJ0eXAi.e30.sig; form token=XYZ987&content=record; "
        '{"client_secret": "s3"}; Basic authentication failed'
    )
    for secret in ("hunter2", "abc123", "tok-known-1234", "eyJ0eXAi", "XYZ987", '"s3"'):
        assert secret not in text, text
    assert "https://bob:(redacted)@x.org/a?access_token=(redacted)&x=1" in text
    assert "Basic authentication failed" in text, "ordinary words stay"
