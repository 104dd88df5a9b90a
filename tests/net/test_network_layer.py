"""The network layer sources and sinks share: TLS settings, secrets, retry timing, words for failures."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pydantic
import pytest
import requests
import responses

from adapter import errors
from adapter.fhir import connect, http
from adapter.fhir import settings as fhir_settings
from adapter.net import credentials, messages, retry
from adapter.net.settings import TlsSettings
from adapter.sinks import settings as sink_settings
from adapter.sinks import transport

BASE = "https://ehr.example.org/fhir"
REPOSITORY = "https://trials.example.org/fhir"


def test_parse_retry_after_forms() -> None:
    now = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
    assert retry.parse_retry_after("120", now) == 120
    assert retry.parse_retry_after("Sat, 01 Mar 2025 12:00:30 GMT", now) == 30
    assert retry.parse_retry_after("Sat, 01 Mar 2025 11:00:00 GMT", now) == 0  # in the past: now
    assert retry.parse_retry_after("soon", now) is None
    assert retry.parse_retry_after(None, now) is None


def test_redact_url_keeps_paging_drops_who() -> None:
    url = f"{BASE}/Observation?patient=a,b,c&code=http://loinc.org|1-8&_count=50&_lastUpdated=gt2025-01-01"
    assert messages.redact_url(url) == (
        f"{BASE}/Observation?patient=…(3)&code=…(1)&_count=50&_lastUpdated=gt2025-01-01"
    )
    assert messages.redact_url(f"{BASE}/metadata") == f"{BASE}/metadata"


def test_outcome_text_reads_details_then_diagnostics() -> None:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": "invalid", "details": {"text": "bad date"}, "diagnostics": "x"},
            {"severity": "warning", "code": "not-supported"},
        ],
    }
    assert messages.outcome_text(body) == "error: bad date; warning: not-supported"
    assert messages.outcome_text({"resourceType": "Patient"}) is None


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"resourceType": "OperationOutcome", "issue": [{"diagnostics": "bad unit"}]}, "error: bad unit"),
        ({"error": "invalid_client", "error_description": "unknown key"}, "unknown key"),  # OAuth
        ({"error": "You do not have permissions to use the API"}, "You do not have permissions"),  # REDCap
        ({"message": "record too large"}, "record too large"),
        ({"error": {"detail": "nested"}}, "nested"),
        ({"status": "bad"}, '{"status": "bad"}'),  # an unknown shape: its start, as sent
    ],
)
@responses.activate
def test_the_server_s_words_come_from_the_usual_error_body_shapes(body: object, said: str) -> None:
    responses.get(REPOSITORY, status=400, json=body)
    response = requests.get(REPOSITORY, timeout=5)
    assert said in (messages.server_said(response) or "")


@responses.activate
def test_an_html_error_page_is_named_not_quoted() -> None:
    responses.get(REPOSITORY, status=502, body="<html><body>Bad gateway at proxy-7</body></html>",
                  content_type="text/html")  # fmt: skip
    assert messages.server_said(requests.get(REPOSITORY, timeout=5)) == "(an HTML error page)"


def test_connection_failures_name_the_setting_that_holds_the_address() -> None:
    refused = requests.exceptions.ConnectionError("[Errno 111] Connection refused")
    assert "host and port in base_url" in messages.connection_problem(refused, "base_url")
    assert "host and port in [repository] url" in messages.connection_problem(refused, "[repository] url")
    tls = requests.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed')")
    assert messages.tls_problem(tls, "[repository.tls]") == (
        "TLS failed ([SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed); if the server uses its "
        "own CA, set [repository.tls] ca_bundle"
    )


def test_secrets_come_from_env_or_file_and_never_into_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NET_TEST_TOKEN", " env-secret-1 \n")
    assert (
        credentials.read_secret("NET_TEST_TOKEN", None, key="repository.auth", what="token") == "env-secret-1"
    )
    assert credentials.redacted("echo env-secret-1") == "echo (redacted)", "a secret read is blanked later"
    monkeypatch.delenv("NET_TEST_TOKEN")
    with pytest.raises(errors.ConfigError, match=r"repository\.auth: environment variable NET_TEST_TOKEN is"):
        credentials.read_secret("NET_TEST_TOKEN", None, key="repository.auth", what="token")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(errors.ConfigError, match="is empty; put the bearer token on its first line"):
        credentials.read_secret(None, tmp_path / "empty", key="sites.source.auth", what="bearer token")
    with pytest.raises(errors.ConfigError, match="cannot read") as caught:
        credentials.read_secret(None, tmp_path / "missing", key="sites.source.auth", what="bearer token")
    assert "sites.source.auth" in str(caught.value)


def test_a_ca_bundle_with_verify_off_is_refused_naming_both_keys() -> None:
    with pytest.raises(pydantic.ValidationError, match="ca_bundle is set but verify = false"):
        TlsSettings(verify=False, ca_bundle=Path("ca.pem"))


def test_source_and_sink_sessions_apply_the_same_tls_settings(tmp_path: Path) -> None:
    tls = TlsSettings(
        ca_bundle=tmp_path / "ca.pem", client_cert=tmp_path / "c.pem", client_key=tmp_path / "c.key"
    )
    source = fhir_settings.RestSource(kind="fhir-rest", base_url=BASE, tls=tls)
    sink = sink_settings.FhirRepository(kind="fhir", url=REPOSITORY, tls=tls)
    client_session = connect.client_for("site-a", source).session
    sink_session = transport.open_session(sink)
    assert client_session.verify == sink_session.verify == str(tmp_path / "ca.pem")
    assert client_session.cert == sink_session.cert == (str(tmp_path / "c.pem"), str(tmp_path / "c.key"))
    assert client_session.headers["User-Agent"] == sink_session.headers["User-Agent"]


def test_verify_off_is_logged_loudly_on_both_sides(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="adapter.net"):
        http.FhirClient("test-site", BASE, tls=TlsSettings(verify=False))
        transport.open_session(
            sink_settings.HttpRepository(kind="http", url=REPOSITORY, tls=TlsSettings(verify=False))
        )
    said = [record.getMessage() for record in caplog.records]
    assert len(said) == 2 and all("TLS certificate verification is OFF" in line for line in said)
    assert "set [sites.source.tls] verify = true" in said[0]
    assert "set [repository.tls] verify = true" in said[1]
