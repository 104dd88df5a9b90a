"""The HTTP layer against a mocked server: what a real server cannot be made to do on demand.

429 storms, 503s, timeouts, Retry-After in both forms, the wait caps, one
re-authentication on 401, OperationOutcome bodies in plain words, and no
patient identifiers in any message.
"""

from __future__ import annotations

import datetime as dt
import email.utils

import prometheus_client
import pytest
import requests
import responses
import urllib3

from adapter import errors
from adapter.fhir import http
from adapter.net.retry import RetryPolicy

from fhirtesting import BASE, Sleeps

OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "processing", "diagnostics": "Unknown patient MRN-778812"}],
}


def responses_counted(site: str, status: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        "trial_adapter_http_responses_total", {"site": site, "status": status}
    )
    return value or 0.0


@responses.activate
def test_429_storm_honours_retry_after_then_succeeds(client: http.FhirClient, sleeps: Sleeps) -> None:
    for _ in range(3):
        responses.get(f"{BASE}/Patient", status=429, headers={"Retry-After": "7"})
    responses.get(f"{BASE}/Patient", json={"resourceType": "Bundle"})
    before = responses_counted("test-site", "429")
    body, _ = client.get_json("Patient")
    assert body["resourceType"] == "Bundle"
    assert sleeps == [7, 7, 7]
    assert responses_counted("test-site", "429") - before == 3


@responses.activate
def test_retry_after_http_date_is_understood_and_capped(sleeps: Sleeps) -> None:
    client = http.FhirClient(
        "test-site", BASE, sleep=sleeps, retry=RetryPolicy(retry_after_cap=30, max_wait=100)
    )
    later = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(hours=5), usegmt=True)
    responses.get(f"{BASE}/metadata", status=503, headers={"Retry-After": later})
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})
    client.get_json("metadata")
    assert sleeps == [30]  # five hours asked, the cap granted


@responses.activate
def test_503s_back_off_exponentially_with_jitter_and_give_up(client: http.FhirClient, sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/Observation", status=503, json=OUTCOME)
    with pytest.raises(errors.TemporaryNetworkError) as caught:
        client.get_json("Observation")
    assert len(responses.calls) == 5 and len(sleeps) == 4  # five tries, four waits
    for retry, waited in enumerate(sleeps, start=1):
        ceiling = 2 ** (retry - 1)
        assert ceiling / 2 <= waited <= ceiling  # "equal jitter" below the doubling ceiling
    assert "gave up after 5 tries" in str(caught.value)
    assert caught.value.status == 503


@responses.activate
def test_total_wait_is_capped(sleeps: Sleeps) -> None:
    client = http.FhirClient("test-site", BASE, sleep=sleeps, retry=RetryPolicy(attempts=10, max_wait=20))
    responses.get(f"{BASE}/Procedure", status=429, headers={"Retry-After": "15"})
    with pytest.raises(errors.TemporaryNetworkError, match="limit"):
        client.get_json("Procedure")
    assert sleeps == [15]  # a second 15 s wait would pass the 20 s cap


@responses.activate
def test_timeouts_and_dropped_connections_are_retried(client: http.FhirClient, sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/Patient", body=requests.exceptions.ReadTimeout("read timed out"))
    responses.get(f"{BASE}/Patient", body=requests.exceptions.ConnectionError("connection reset"))
    responses.get(f"{BASE}/Patient", body=requests.exceptions.ChunkedEncodingError("body cut off"))
    responses.get(f"{BASE}/Patient", json={"resourceType": "Bundle"})
    assert client.get_json("Patient")[0]["resourceType"] == "Bundle"
    assert len(sleeps) == 3


@responses.activate
def test_timeouts_that_never_end_name_the_problem(client: http.FhirClient) -> None:
    responses.get(f"{BASE}/Patient", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(errors.TemporaryNetworkError, match="did not answer in time"):
        client.get_json("Patient")


@responses.activate
def test_tls_failure_is_fatal_with_the_fix(client: http.FhirClient, sleeps: Sleeps) -> None:
    responses.get(f"{BASE}/metadata", body=requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(errors.FatalNetworkError, match="ca_bundle"):
        client.get_json("metadata")
    assert sleeps == []


def urllib3_failure(kind: type[requests.exceptions.RequestException], cause: str) -> Exception:
    """What requests raises when connecting fails: urllib3's message names the path and query."""
    pool = urllib3.connectionpool.HTTPSConnectionPool("ehr.example.org", 443)
    url = "/fhir/Patient?identifier=http%3A%2F%2Fhospital%2Fmrn%7CMRN-778812&_count=50"
    reason = urllib3.exceptions.NewConnectionError(None, cause)
    return kind(urllib3.exceptions.MaxRetryError(pool, url, reason))


@responses.activate
@pytest.mark.parametrize(
    ("failure", "said"),
    [
        (
            urllib3_failure(requests.exceptions.ConnectionError, "[Errno 113] No route to host"),
            "no route to the host",
        ),
        (
            urllib3_failure(requests.exceptions.ConnectionError, "[Errno 99] Cannot assign address"),
            "identifier=…(1)&_count=50 (Caused by",
        ),
        (urllib3_failure(requests.exceptions.SSLError, "certificate verify failed"), "ca_bundle"),
    ],
)
def test_connection_failures_never_show_the_mrn_urllib3_puts_in_its_message(
    client: http.FhirClient, failure: Exception, said: str
) -> None:
    responses.get(f"{BASE}/Patient", body=failure)
    with pytest.raises(errors.NetworkError) as caught:
        client.get_json("Patient", params={"identifier": "http://hospital/mrn|MRN-778812", "_count": "50"})
    assert said in str(caught.value)
    assert "MRN-778812" not in str(caught.value)


@responses.activate
def test_a_redirect_loop_is_an_explained_fatal_error_not_a_crash(client: http.FhirClient) -> None:
    # A gateway bouncing the client back to the same URL; requests gives up after 30 redirects.
    url = f"{BASE}/Patient?identifier=MRN-778812"
    responses.get(url, status=302, headers={"Location": url})
    with pytest.raises(errors.FatalNetworkError, match="keeps redirecting") as caught:
        client.get_json(url)
    assert "site test-site" in str(caught.value) and "MRN-778812" not in str(caught.value)


@responses.activate
def test_fatal_status_is_not_retried_and_explained_without_phi(
    client: http.FhirClient, sleeps: Sleeps
) -> None:
    responses.get(f"{BASE}/Patient", status=404, json=OUTCOME)
    with pytest.raises(errors.FatalNetworkError) as caught:
        client.get_json(
            "Patient",
            params={"identifier": "http://hospital/mrn|MRN-778812", "_count": "50"},
            sensitive=["MRN-778812"],
        )
    message = str(caught.value)
    assert len(responses.calls) == 1 and sleeps == []
    assert "site test-site" in message and "answered 404" in message
    assert "error: Unknown patient …" in message  # the server's words, the echoed MRN removed
    assert "MRN-778812" not in message
    assert "identifier=…(1)" in message and "_count=50" in message
    assert "base_url" in message  # the fix


@responses.activate
def test_oauth_error_body_in_plain_words(client: http.FhirClient) -> None:
    responses.post(
        f"{BASE}/auth/token", status=400, json={"error": "invalid_client", "error_description": "unknown kid"}
    )
    with pytest.raises(errors.FatalNetworkError, match="unknown kid"):
        client.request("POST", "auth/token", data={"grant_type": "client_credentials"})


@responses.activate
def test_html_error_page_is_not_dumped(client: http.FhirClient) -> None:
    responses.get(f"{BASE}/Patient", status=403, body="<html>" + "x" * 5000, content_type="text/html")
    with pytest.raises(errors.FatalNetworkError) as caught:
        client.get_json("Patient")
    assert "(an HTML error page)" in str(caught.value) and "xxxx" not in str(caught.value)


class CountingAuth:
    """An auth scheme that hands out numbered tokens and counts refreshes."""

    def __init__(self) -> None:
        self.token = 1
        self.refreshes = 0

    def headers(self, client: http.FhirClient) -> dict[str, str]:
        return {"Authorization": f"Bearer t{self.token}"}

    def refresh(self, client: http.FhirClient) -> bool:
        self.refreshes += 1
        self.token += 1
        return True


@responses.activate
def test_401_gets_one_reauth_that_is_not_a_retry(sleeps: Sleeps) -> None:
    auth = CountingAuth()
    client = http.FhirClient("test-site", BASE, auth=auth, sleep=sleeps, retry=RetryPolicy(attempts=1))
    responses.get(f"{BASE}/Patient", status=401)
    responses.get(f"{BASE}/Patient", json={"resourceType": "Bundle"})
    client.get_json("Patient")
    assert auth.refreshes == 1 and sleeps == []  # attempts=1 and still through: not counted
    assert responses.calls[1].request.headers["Authorization"] == "Bearer t2"


@responses.activate
def test_second_401_is_fatal(sleeps: Sleeps) -> None:
    auth = CountingAuth()
    client = http.FhirClient("test-site", BASE, auth=auth, sleep=sleeps)
    responses.get(f"{BASE}/Patient", status=401)
    with pytest.raises(errors.FatalNetworkError, match="refused the credentials"):
        client.get_json("Patient")
    assert auth.refreshes == 1 and len(responses.calls) == 2


@responses.activate
def test_malformed_json_is_a_source_error(client: http.FhirClient) -> None:
    responses.get(
        f"{BASE}/Observation", body=b'{"resourceType": "Bundle", "entry": [', content_type="application/json"
    )
    with pytest.raises(errors.SourceError, match="not valid JSON"):
        client.get_json("Observation", params={"patient": "p1,p2"})
