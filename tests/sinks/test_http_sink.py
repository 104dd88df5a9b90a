"""The http sink: PUT by record id, DELETE to retract, bearer or mutual TLS, one try per item."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
import responses

from adapter import errors
from adapter.net.settings import TlsSettings
from adapter.sinks import settings
from adapter.sinks.http import HttpSink

from .conftest import MakeDelivery

BASE = "https://trials.example.org/api"


def http_settings(**overrides: Any) -> settings.HttpRepository:
    raw: dict[str, Any] = {"kind": "http", "url": BASE, "auth": {"kind": "bearer", "token_env": "REPO_TOKEN"}}
    raw.update(overrides)
    return settings.HttpRepository.model_validate(raw)


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> HttpSink:
    monkeypatch.setenv("REPO_TOKEN", "s3cret-token")
    return HttpSink(http_settings())


def url(record: dict[str, Any]) -> str:
    return f"{BASE}/{record['record_type']}/{record['record_id']}"


@responses.activate
def test_upsert_puts_json_by_record_id_with_bearer(
    sink: HttpSink, demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    record = demo_records[0]
    responses.put(url(record), status=204)
    results = sink.deliver([make_delivery(record)])
    assert [r.ok for r in results] == [True]
    call = responses.calls[0].request
    assert call.headers["Authorization"] == "Bearer s3cret-token"
    assert call.headers["Content-Type"] == "application/json"
    assert orjson.loads(call.body or b"") == record


@responses.activate
@pytest.mark.parametrize("status", [200, 204, 404, 410])
def test_retraction_deletes_and_an_absent_record_counts_as_retracted(
    status: int, sink: HttpSink, demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    record = demo_records[0]
    responses.delete(url(record), status=status)
    assert [r.ok for r in sink.deliver([make_delivery(record, "retract")])] == [True]
    assert responses.calls[0].request.body is None


@responses.activate
def test_rejected_item_holds_its_subjects_later_items_but_not_others(
    sink: HttpSink, demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    first, second = (
        demo_records[0],
        next(
            r
            for r in demo_records
            if r["subject_id"] == demo_records[0]["subject_id"] and r is not demo_records[0]
        ),
    )
    other = next(r for r in demo_records if r["subject_id"] != first["subject_id"])
    responses.put(url(first), status=422, json={"message": "value out of range for field 'wbc'"})
    responses.put(url(other), status=201)
    batch = [make_delivery(first), make_delivery(second), make_delivery(other)]
    results = sink.deliver(batch)
    assert [(r.item_id, r.ok) for r in results] == [(batch[0].item_id, False), (batch[2].item_id, True)]
    assert results[0].error is not None and "422" in results[0].error and "out of range" in results[0].error
    assert not results[0].outage
    assert len(responses.calls) == 2  # the subject's second item was not sent


@responses.activate
@pytest.mark.parametrize("status", [401, 429, 500, 503])
def test_outage_stops_the_batch(
    status: int, sink: HttpSink, demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    responses.put(url(demo_records[0]), status=status, body="upstream down")
    results = sink.deliver([make_delivery(r) for r in demo_records[:5]])
    assert len(results) == 1 and results[0].outage and not results[0].ok
    assert str(status) in (results[0].error or "")
    assert len(responses.calls) == 1


@responses.activate
def test_unreachable_repository_is_an_outage(
    sink: HttpSink, demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    responses.put(url(demo_records[0]), body=requests.ConnectionError("connection refused"))
    results = sink.deliver([make_delivery(r) for r in demo_records[:3]])
    assert len(results) == 1 and results[0].outage
    assert "cannot reach" in (results[0].error or "")


def test_token_file_and_missing_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "token"
    token.write_text("from-file\n")
    sink = HttpSink(http_settings(auth={"kind": "bearer", "token_file": str(token)}))
    assert sink.session.headers["Authorization"] == "Bearer from-file"
    monkeypatch.delenv("REPO_TOKEN", raising=False)
    with pytest.raises(errors.ConfigError, match="REPO_TOKEN is unset"):
        _ = HttpSink(http_settings()).session


def test_mutual_tls_without_a_token(tmp_path: Path) -> None:
    cert, key, ca = (tmp_path / n for n in ("client.pem", "client.key", "ca.pem"))
    repository = http_settings(
        auth={"kind": "none"},
        tls=TlsSettings(client_cert=cert, client_key=key, ca_bundle=ca),
    )
    session = HttpSink(repository).session
    assert session.cert == (str(cert), str(key))
    assert session.verify == str(ca)
    assert "Authorization" not in session.headers


def test_preview_shows_requests_without_credentials(
    demo_records: list[dict[str, Any]], make_delivery: MakeDelivery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPO_TOKEN", raising=False)  # a dry run needs no token
    plans = HttpSink(http_settings()).preview(
        [make_delivery(demo_records[0]), make_delivery(demo_records[1], "retract")]
    )
    assert [(p.method, p.target) for p in plans] == [
        ("PUT", url(demo_records[0])),
        ("DELETE", url(demo_records[1])),
    ]
    assert plans[0].body == demo_records[0] and plans[1].body is None
