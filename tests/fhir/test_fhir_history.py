"""A type's history as the REST source reads it (``adapter.fhir.history``), against a mocked server.

What a real server does not do on demand: history entries out of order,
without request or response, of another type; paging that loops or runs on;
a CapabilityStatement without ``history-type``.  The end-to-end behaviour
against sekmet is in ``test_fhir_deletions.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import responses

from adapter import config as config_mod
from adapter import errors
from adapter import paths as adapter_paths
from adapter import roster as roster_mod
from adapter.fhir import history, http, rest, search_terms
from adapter.fhir import settings as fhir_settings
from adapter.fhir.source import Page, SourceLine
from adapter.mapping import catalog as catalog_mod
from adapter.mapping import discovery

from fhirtesting import BASE

SINCE = dt.datetime(2025, 6, 1, 9, 55, tzinfo=dt.UTC)
T0 = "2025-06-01T10:00:00.000Z"
HISTORY = f"{BASE}/Procedure/_history"


def proc(identifier: str, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": identifier,
        "status": "completed",
        "subject": {"reference": f"Patient/{patient}"},
    }


def bundle(resources: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    """A searchset page, stamped with the server's time."""
    body: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "meta": {"lastUpdated": T0}}
    body["entry"] = [{"resource": r, "search": {"mode": "match"}} for r in resources]
    body["link"] = [{"relation": "next", "url": next_url}] if next_url else []
    return body


def source(client: http.FhirClient, **settings: Any) -> rest.RestSearchSource:
    config = fhir_settings.RestSource(kind="fhir-rest", base_url=BASE, **settings)
    entry = roster_mod.RosterEntry("http://hospital.example/mrn", "NM0000001", "S-001", dt.date(2025, 1, 1))
    catalog = catalog_mod.load_catalog(adapter_paths.default_mappings_dir(), "demo-north")
    return rest.RestSearchSource(
        "demo-north",
        config,
        roster=roster_mod.Roster([entry]),
        wanted=discovery.source_wanted(catalog),
        client=client,
        prefetch=False,
    )


def serve_history(pages: list[list[Any]], resource_type: str = "Procedure") -> None:
    """The type's history in pages, chosen by ``_offset``; next links like sekmet's, without ``_since``."""

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        asked = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))
        index = int(asked.get("_offset", 0))
        more = (
            f"{BASE}/{resource_type}/_history?_count=2&_offset={index + 1}"
            if index + 1 < len(pages)
            else None
        )
        return 200, {}, json.dumps(history_page(pages[index], next_url=more))

    responses.add_callback(responses.GET, f"{BASE}/{resource_type}/_history", callback=answer)


def statement(
    *types: str, interactions: tuple[str, ...] = ("read", "search-type", "history-type")
) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "rest": [
            {
                "mode": "server",
                "resource": [{"type": t, "interaction": [{"code": c} for c in interactions]} for t in types],
            }
        ],
    }


def entry(ref: str, method: str | None, when: str | None = None, **extra: Any) -> dict[str, Any]:
    """A history entry: a DELETE without a resource, anything else with one (a patient's data)."""
    kind, _, resource_id = ref.partition("/")
    item: dict[str, Any] = {"fullUrl": f"{BASE}/{ref}"}
    if method != "DELETE":
        item["resource"] = {**proc(resource_id, "someone-else"), "resourceType": kind}
    if method is not None:
        item["request"] = {"method": method, "url": kind if method == "POST" else ref}
    if when is not None:
        item["response"] = {"status": "200 OK", "lastModified": when}
    return {**item, **extra}


def history_page(entries: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "entry": entries}
    if next_url:
        body["link"] = [{"relation": "next", "url": next_url}]
    return body


def incremental_pages(client: http.FhirClient, **settings: Any) -> list[Page]:
    """One incremental pass over Procedure: the patients, then the type's pages."""
    responses.get(f"{BASE}/Patient", json=bundle([]))
    src = source(client, **settings)
    list(src.patients())
    return list(src.pages("Procedure", patient_refs=["Patient/a"], since=SINCE, resume=None))


def asked_paths() -> list[str]:
    return [urllib.parse.urlsplit(c.request.url).path.removeprefix("/fhir/") for c in responses.calls]


@responses.activate
def test_the_first_page_carries_the_types_deletions_newest_entry_wins(client: http.FhirClient) -> None:
    page2 = f"{BASE}/Procedure?patient=a&_count=1&_offset=1&_lastUpdated=gt2025-06-01T09:55:00.000Z"
    responses.get(page2, json=bundle([proc("live2", "a")]))
    responses.get(f"{BASE}/Procedure", json=bundle([proc("live", "a")], next_url=page2))
    responses.get(f"{BASE}/metadata", json=statement("Patient", "Procedure"))
    serve_history(
        [
            [
                entry("Procedure/gone", "DELETE", "2025-06-01T10:00:02Z"),
                entry("Procedure/back", "PUT", "2025-06-01T10:00:05Z"),  # created again after its deletion
                entry("Observation/o1", "DELETE", "2025-06-01T10:00:04Z"),  # another type: not ours
                entry("Procedure/quiet", None),  # no request, no response: a version, so not deleted
                {"fullUrl": f"{BASE}/Procedure/tombstone", "response": {"status": "410 Gone"}},
                entry("Procedure/first", "DELETE"),  # no times: the order says newest first
                entry("Procedure/first", "PUT"),
            ],
            [
                entry("Procedure/back", "DELETE", "2025-06-01T10:00:03Z"),
                entry("Procedure/gone", "PUT", "2025-06-01T10:00:01Z"),
                entry("Procedure/undone", "PUT", "2025-06-01T10:00:01Z"),
                {"request": {"method": "DELETE", "url": f"{BASE}/Procedure/undone/_history/3"}},
            ],
        ]
    )
    pages = incremental_pages(client, patient_batch_size=1, page_size=1)
    assert [p.deleted for p in pages] == [["Procedure/first", "Procedure/gone", "Procedure/tombstone"], []]
    # The history came after the first page's search (so it is never older than that page) and with
    # the same since as its _lastUpdated; the next link got its _since back.
    assert asked_paths() == [
        "Patient",
        "Procedure",
        "metadata",
        "Procedure/_history",
        "Procedure/_history",
        "Procedure",
    ]
    asked = [
        dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(c.request.url).query)) for c in responses.calls
    ]
    assert asked[3] == {"_since": "2025-06-01T09:55:00.000Z", "_count": "1"}
    assert asked[1]["_lastUpdated"] == "gt" + asked[3]["_since"]
    assert asked[4]["_since"] == asked[3]["_since"] and asked[4]["_offset"] == "1"


@responses.activate
def test_gone_and_back_by_time_not_by_order(client: http.FhirClient) -> None:
    responses.get(f"{BASE}/Procedure", json=bundle([]))
    responses.get(f"{BASE}/metadata", json=statement("Procedure"))
    serve_history(
        [
            [
                entry("Procedure/gone", "DELETE", "2025-06-01T10:00:02Z"),
                entry("Procedure/gone", "POST", "2025-06-01T10:00:01Z"),
                entry("Procedure/back", "DELETE", "2025-06-01T10:00:02Z"),
                entry("Procedure/back", "POST", "2025-06-01T10:00:03Z"),  # listed later, newer: not deleted
                entry("Procedure/same", "PUT", "2025-06-01T10:00:02Z"),
                entry("Procedure/same", "DELETE", "2025-06-01T10:00:02Z"),  # the same time: the order
            ]
        ]
    )
    assert [p.deleted for p in incremental_pages(client)] == [["Procedure/gone"]]


@responses.activate
def test_a_server_without_history_type_is_never_asked_for_history(client: http.FhirClient) -> None:
    responses.get(f"{BASE}/Procedure", json=bundle([]))
    responses.get(f"{BASE}/metadata", json=statement("Procedure", interactions=("read", "history-instance")))
    pages = incremental_pages(client)
    assert [p.deleted for p in pages] == [[]]
    assert "Procedure/_history" not in asked_paths()


@responses.activate
def test_the_switch_off_full_passes_and_resumed_passes_ask_nothing_more(client: http.FhirClient) -> None:
    responses.get(f"{BASE}/Procedure", json=bundle([]))
    pages = incremental_pages(client, deletions_from_history=False)
    assert [p.deleted for p in pages] == [[]] and asked_paths() == ["Patient", "Procedure"]

    src = source(client)
    list(src.patients())
    list(src.pages("Procedure", patient_refs=["Patient/a"], since=None, resume=None))  # a full pass
    plan = src.plan("Procedure", ["a"], SINCE)
    resumed = search_terms.PassCursor(
        search_terms.plan_fingerprint(plan), 0, f"{BASE}/Procedure?patient=a&_offset=1", None
    )
    list(src.pages("Procedure", patient_refs=["Patient/a"], since=SINCE, resume=resumed.dump()))
    # A resumed pass committed its first page, and the deletions with it, before the crash.
    assert not any(p in ("metadata", "Procedure/_history") for p in asked_paths())


@responses.activate
def test_the_statement_is_asked_once_per_pass_and_history_requests_are_counted(
    client: http.FhirClient,
) -> None:
    for kind in ("Procedure", "MedicationAdministration"):
        responses.get(f"{BASE}/{kind}", json=bundle([]))
        serve_history([[]], kind)
    responses.get(f"{BASE}/metadata", json=statement("Procedure", "MedicationAdministration"))
    responses.get(f"{BASE}/Patient", json=bundle([]))
    src = source(client)
    for _pass in range(2):
        list(src.patients())
        for kind in ("Procedure", "MedicationAdministration"):
            list(src.pages(kind, patient_refs=["Patient/a"], since=SINCE, resume=None))
    assert asked_paths().count("metadata") == 2  # once per pass: a server may change between passes
    assert (
        asked_paths().count("Procedure/_history")
        == asked_paths().count("MedicationAdministration/_history")
        == 2
    )
    assert src.requests_made == len(responses.calls)


@pytest.mark.parametrize(
    "answer",
    [
        {"json": {"resourceType": "Bundle", "type": "searchset", "entry": []}},
        {"json": {"resourceType": "Bundle", "type": "history", "entry": {"request": {}}}},
        {"json": history_page(["junk"])},  # type: ignore[list-item]
        {"json": history_page([], next_url=f"{HISTORY}?page=2")},
        {
            "json": history_page(
                [entry("Procedure/x", "DELETE")], next_url="https://elsewhere.example/fhir/p2"
            )
        },
        {"json": {**history_page([entry("Procedure/x", "DELETE")]), "link": [{"relation": "next"}]}},
        {
            "json": history_page(
                [entry("Procedure/x", "DELETE")],
                next_url=HISTORY + "?_count=100&_since=2025-06-01T09:55:00.000Z",
            )
        },
        {"body": "<html>proxy error</html>"},
        {"status": 403, "json": {"resourceType": "OperationOutcome", "issue": []}},
        {"status": 503},
    ],
    ids=[
        "searchset",
        "entry-not-a-list",
        "entry-not-an-object",
        "empty-page-with-next",
        "next-elsewhere",
        "next-without-url",
        "next-loops",
        "not-json",
        "forbidden",
        "down",
    ],
)
@responses.activate
def test_a_history_that_cannot_be_read_is_skipped_with_a_warning(
    client: http.FhirClient, caplog: pytest.LogCaptureFixture, answer: dict[str, Any]
) -> None:
    responses.get(f"{BASE}/Procedure", json=bundle([proc("kept", "a")]))
    responses.get(f"{BASE}/metadata", json=statement("Procedure"))
    responses.get(HISTORY, **answer)
    with caplog.at_level(logging.WARNING, logger="adapter.fhir.history"):
        pages = incremental_pages(client)
    assert [p.deleted for p in pages] == [[]]
    assert [line.resource["id"] for line in pages[0].lines if isinstance(line, SourceLine)] == ["kept"]
    warnings = [r for r in caplog.records if r.name == "adapter.fhir.history"]
    assert len(warnings) == 1 and "next full sweep" in warnings[0].getMessage()
    assert "someone-else" not in caplog.text  # no content of the history's resources in the log


@responses.activate
def test_a_history_longer_than_the_limit_is_left_to_the_sweep(
    client: http.FhirClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "MAX_PAGES", 3)
    responses.get(f"{BASE}/Procedure", json=bundle([]))
    responses.get(f"{BASE}/metadata", json=statement("Procedure"))
    serve_history([[entry(f"Procedure/x{n}", "DELETE")] for n in range(5)])
    assert [p.deleted for p in incremental_pages(client)] == [[]]
    assert asked_paths().count("Procedure/_history") == 3


def test_history_types_reads_only_the_servers_own_declarations() -> None:
    declared = statement("Procedure", "Observation")
    declared["rest"][0]["resource"][1]["interaction"] = [{"code": "history-instance"}]
    declared["rest"].append(
        {"mode": "client", "resource": [{"type": "Patient", "interaction": [{"code": "history-type"}]}]}
    )
    assert history.history_types(declared) == {"Procedure"}
    assert history.history_types({"resourceType": "Bundle", "rest": declared["rest"]}) == frozenset()
    assert history.history_types({"resourceType": "CapabilityStatement", "rest": "junk"}) == frozenset()


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("Procedure/x1", "Procedure/x1"),
        (f"{BASE}/Procedure/x1/_history/4", "Procedure/x1"),
        ("Procedure/x1?_format=json", "Procedure/x1"),
        ("Procedure", None),
        ("Procedure/", None),
        ("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", None),
        ("Procedure/a b", None),
        (None, None),
    ],
)
def test_references_of_history_entries(text: object, ref: str | None) -> None:
    assert history.reference(text) == ref


@pytest.mark.parametrize(("value", "ok"), [(True, True), (False, True), ("maybe", False), (1.5, False)])
def test_the_switch_takes_true_or_false_and_says_what_it_does_otherwise(
    tmp_path: Path, value: object, ok: bool
) -> None:
    source_table = {"kind": "fhir-rest", "base_url": BASE, "deletions_from_history": value}
    raw = {
        "sites": [{"id": "site-a", "timezone": "UTC", "roster": "roster.csv", "source": source_table}],
        "repository": {"kind": "file", "path": "out"},
    }
    if ok:
        loaded = config_mod.config_from_dict(raw, base_dir=tmp_path).sites[0].source
        assert isinstance(loaded, fhir_settings.RestSource) and loaded.deletions_from_history is value
        return
    with pytest.raises(errors.ConfigError) as caught:
        config_mod.config_from_dict(raw, base_dir=tmp_path)
    said = " ".join(str(caught.value).split())
    assert "source.deletions_from_history: Input should be a valid boolean" in said
    assert "false never asks for history" in said
