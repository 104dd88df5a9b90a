"""The REST search source and its paging, against a mocked server: malformed pages, loops, cursors.

What a real server does not do on demand (a page that links to itself, a
next link to another host, a Bundle without entries that claims more) is
mocked here with ``responses``; the full behaviour against a real server is
in ``test_fhir_rest_sync.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from typing import Any

import pytest
import responses
from responses import matchers

from adapter import errors, paths
from adapter import roster as roster_mod
from adapter.fhir import bundles, http, rest, search_terms
from adapter.fhir import settings as fhir_settings
from adapter.fhir.source import BadLine, SourceLine
from adapter.mapping import catalog as catalog_mod
from adapter.mapping import discovery

from fhirtesting import BASE

MRN = "http://hospital-north.example/fhir/mrn"
T0 = "2025-06-01T10:00:00.000Z"


def obs(identifier: str, patient: str = "p1") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": identifier,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
        "subject": {"reference": f"Patient/{patient}"},
    }


def proc(identifier: str, patient: str = "p1") -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": identifier,
        "status": "completed",
        "subject": {"reference": f"Patient/{patient}"},
    }


def bundle(resources: list[dict[str, Any]], next_url: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "meta": {"lastUpdated": T0},
        **extra,
    }
    if resources:
        body["entry"] = [{"resource": r, "search": {"mode": "match"}} for r in resources]
    body["link"] = [{"relation": "self", "url": f"{BASE}/Observation"}]
    if next_url:
        body["link"].append({"relation": "next", "url": next_url})
    return body


def source(client: http.FhirClient, **settings: Any) -> rest.RestSearchSource:
    config = fhir_settings.RestSource(kind="fhir-rest", base_url=BASE, **settings)
    entries = [
        roster_mod.RosterEntry(MRN, f"NM{n:07d}", f"S-{n:03d}", dt.date(2025, 1, 1)) for n in range(1, 6)
    ]
    return rest.RestSearchSource(
        "demo-north",
        config,
        roster=roster_mod.Roster(entries),
        wanted=discovery.source_wanted(catalog_mod.load_catalog(paths.default_mappings_dir(), "demo-north")),
        client=client,
    )


def query(call: Any) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(call.request.url).query))


# ------------------------------------------------------------------ pages


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"resourceType": "Patient", "id": "x"}, "expected a Bundle"),
        (
            {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "diagnostics": "too costly"}],
            },
            "OperationOutcome: error: too costly",
        ),
        ({"resourceType": "Bundle", "type": "history"}, "expected a searchset"),
        ({"resourceType": "Bundle", "type": "searchset", "entry": {"resource": {}}}, "not a list"),
        (bundle([], next_url=f"{BASE}/Observation?page=2"), "without entries links to a next page"),
        (bundle([], total=12), "says total 12 but carries no entries"),
        (bundle([obs("o1")], next_url="https://elsewhere.example/fhir/Observation?page=2"), "another server"),
        (bundle([obs("o1")], next_url="ftp://ehr.example.org/x"), "not an http"),
        ({**bundle([obs("o1")]), "link": [{"relation": "next"}]}, "next link has no url"),
    ],
)
@responses.activate
def test_unusable_pages_are_clear_source_errors(
    client: http.FhirClient, body: dict[str, Any], problem: str
) -> None:
    responses.get(f"{BASE}/Observation", json=body)
    with pytest.raises(errors.SourceError, match=problem) as caught:
        list(bundles.walk(client, "Observation", resource_type="Observation", params={"patient": "p9"}))
    assert "site test-site" in str(caught.value) and "p9" not in str(caught.value)


@responses.activate
def test_a_next_link_that_loops_ends_the_walk(client: http.FhirClient) -> None:
    page2 = f"{BASE}/Observation?_offset=2&_count=2"
    responses.get(f"{BASE}/Observation", json=bundle([obs("o1"), obs("o2")], next_url=page2))
    responses.get(page2, json=bundle([obs("o3")], next_url=f"{BASE}/Observation?_count=2&_offset=2"))
    walk = bundles.walk(client, "Observation", resource_type="Observation", params={"_count": "2"})
    assert len(next(walk).lines) == 2
    # Page 2 links back to itself: caught before page 2 is handed on, so its cursor (holding
    # the looping link) is never committed and the next pass asks for page 2 again.
    with pytest.raises(errors.SourceError, match="paging loop"):
        next(walk)
    assert len(responses.calls) == 2


@responses.activate
def test_a_next_link_into_an_earlier_search_of_the_pass_stops_it_before_skipping_pages(
    client: http.FhirClient,
) -> None:
    def search(patient: str, offset: int | None, body: dict[str, Any]) -> None:
        params = {"patient": patient, "_count": "100", **({"_offset": str(offset)} if offset else {})}
        responses.get(f"{BASE}/Procedure", json=body, match=[matchers.query_param_matcher(params)])

    first_of_a = f"{BASE}/Procedure?patient=a&_count=100"
    search("a", None, bundle([proc("x1", "a")]))
    search("b", None, bundle([proc("x2", "b")], next_url=f"{BASE}/Procedure?patient=b&_count=100&_offset=1"))
    # A server mixing up its paging caches: page 2 of b's search links to a's first page.
    # Followed, a's pages would be read again and the rest of b's search never.
    search("b", 1, bundle([proc("x3", "b")], next_url=first_of_a))
    src = source(client, patient_batch_size=1)
    pages = src.pages("Procedure", patient_refs=["Patient/a", "Patient/b"], since=None, resume=None)
    handed_on = [next(pages), next(pages)]
    with pytest.raises(errors.SourceError, match="points back to a page already read") as caught:
        next(pages)
    assert "patient=…(1)&_count=100&_offset=1" in str(caught.value) and "x3" not in str(caught.value)
    cursor = search_terms.PassCursor.load(handed_on[-1].cursor or "")
    assert cursor is not None and cursor.query == 1 and cursor.next_url is not None
    assert cursor.next_url.endswith("patient=b&_count=100&_offset=1")  # the next pass starts there


@responses.activate
def test_bad_entries_become_bad_lines_and_server_messages_are_skipped(client: http.FhirClient) -> None:
    body = bundle([obs("o1")])
    body["entry"] += [
        {"resource": {"resourceType": "Patient", "id": "p1"}, "search": {"mode": "include"}},
        {"resource": {"resourceType": "OperationOutcome", "issue": []}, "search": {"mode": "outcome"}},
        {"resource": {"resourceType": "Procedure", "id": "x"}},
        {"resource": {"resourceType": "Observation"}},
        {"fullUrl": "urn:uuid:1"},
        "junk",
    ]
    responses.get(f"{BASE}/Observation", json=body)
    page = bundles.read_page(client, "Observation", resource_type="Observation")
    good = [line for line in page.lines if isinstance(line, SourceLine)]
    bad = [line.problem for line in page.lines if isinstance(line, BadLine)]
    assert [line.location for line in good] == ["Observation/o1"]
    assert bad == [
        "resourceType is 'Procedure', not Observation",
        "resource has no id",
        "Bundle entry has no resource",
        "Bundle entry is not an object",
    ]


@responses.activate
def test_server_time_falls_back_to_the_date_header(client: http.FhirClient) -> None:
    body = bundle([obs("o1")])
    del body["meta"]
    responses.get(f"{BASE}/Observation", json=body, headers={"Date": "Sun, 01 Jun 2025 10:00:00 GMT"})
    page = bundles.read_page(client, "Observation", resource_type="Observation")
    assert page.server_time == dt.datetime(2025, 6, 1, 10, 0, tzinfo=dt.UTC)


# ------------------------------------------------------------------ plan


def test_plan_batches_patients_chunks_codes_and_adds_filters(client: http.FhirClient) -> None:
    src = source(client, patient_batch_size=2, codes_per_query=10, observation_category=("laboratory",))
    tokens = search_terms.code_tokens(src.wanted.codes_for("Observation") or ())
    assert "urn:oid:2.16.840.1.113883.6.1|2160-0" in tokens  # the OID spelling of LOINC too
    assert "http://loinc.org|2160-0" in tokens
    assert not any("rxnorm" in t or "cpt" in t for t in tokens)  # not Observation concepts
    since = dt.datetime(2025, 6, 1, 12, 0, 0, 250000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    plan = src.plan("Observation", ["c", "a", "b", "d", "e"], since)
    chunks = -(-len(tokens) // 10)
    assert len(plan) == 3 * chunks
    first = dict(plan[0].params)
    assert first["patient"] == "a,b"
    assert len(first["code"].split(",")) == 10
    assert first["category"] == "laboratory"
    assert first["_lastUpdated"] == "gt2025-06-01T10:00:00.250Z"
    assert first["_count"] == "100"
    procedures = src.plan("Procedure", ["a", "b", "c"], None)
    assert [dict(q.params) for q in procedures] == [
        {"patient": "a,b", "_count": "100"},
        {"patient": "c", "_count": "100"},
    ]


def test_token_escaping() -> None:
    assert search_terms.escape_token(r"a,b|c$d\e") == r"a\,b\|c\$d\\e"


# ------------------------------------------------------------------ source


@responses.activate
def test_patients_are_found_by_identifier_in_batches(client: http.FhirClient) -> None:
    def respond(request: Any) -> tuple[int, dict[str, str], str]:
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))
        values = [token.split("|")[1] for token in params["identifier"].split(",")]
        patients = [
            {"resourceType": "Patient", "id": v.lower(), "identifier": [{"system": MRN, "value": v}]}
            for v in values
        ]
        return 200, {}, json.dumps(bundle(patients))

    responses.add_callback(responses.GET, f"{BASE}/Patient", callback=respond)
    src = source(client, patient_batch_size=2)
    found = [line.resource["id"] for line in src.patients() if isinstance(line, SourceLine)]
    assert found == ["nm0000001", "nm0000002", "nm0000003", "nm0000004", "nm0000005"]
    assert [query(c)["identifier"].count(",") + 1 for c in responses.calls] == [2, 2, 1]
    assert all("name" not in query(c) for c in responses.calls)


@responses.activate
def test_pages_carry_a_resumable_cursor_and_the_first_pages_server_time(client: http.FhirClient) -> None:
    page2 = f"{BASE}/Procedure?patient=a&_count=1&_offset=1"
    responses.get(f"{BASE}/Procedure", json=bundle([proc("x1", "a")], next_url=page2))
    later = bundle([proc("x2", "a")])
    later["meta"]["lastUpdated"] = "2025-06-01T10:05:00Z"
    responses.get(page2, json=later)
    src = source(client, patient_batch_size=1)
    pages = list(src.pages("Procedure", patient_refs=["Patient/a"], since=None, resume=None))
    assert [p.watermark for p in pages] == [bundles.parse_instant(T0)] * 2  # the pass's start, not later
    first = search_terms.PassCursor.load(pages[0].cursor or "")
    last = search_terms.PassCursor.load(pages[1].cursor or "")
    assert first is not None and first.query == 0 and first.next_url == page2
    assert last is not None and last.query == 1 and last.next_url is None
    assert [line.resource["id"] for p in pages for line in p.lines if isinstance(line, SourceLine)] == [
        "x1",
        "x2",
    ]


@responses.activate
def test_resume_continues_at_the_saved_page_with_the_original_watermark(client: http.FhirClient) -> None:
    src = source(client, patient_batch_size=1)
    plan = src.plan("Observation", ["a", "b"], None)
    fingerprint = search_terms.plan_fingerprint(plan)
    saved_next = f"{BASE}/Observation?patient=a&_offset=100"
    cursor = search_terms.PassCursor(fingerprint, 0, saved_next, "2025-05-01T08:00:00+00:00").dump()
    responses.get(saved_next, json=bundle([obs("o5", "a")]))
    responses.get(f"{BASE}/Observation", json=bundle([obs("o9", "b")]))
    pages = list(src.pages("Observation", patient_refs=["Patient/a", "Patient/b"], since=None, resume=cursor))
    assert [p.lines[0].resource["id"] for p in pages if isinstance(p.lines[0], SourceLine)] == ["o5", "o9"]
    assert responses.calls[0].request.url == saved_next
    assert query(responses.calls[1])["patient"] == dict(plan[1].params)["patient"] == "b"
    assert {p.watermark for p in pages} == {dt.datetime(2025, 5, 1, 8, 0, tzinfo=dt.UTC)}
    assert src.complete_listing is False  # a resumed pass did not see everything itself


@responses.activate
def test_a_cursor_from_another_plan_starts_over(client: http.FhirClient) -> None:
    responses.get(f"{BASE}/Procedure", json=bundle([]))
    src = source(client)
    stale = search_terms.PassCursor("0000", 3, f"{BASE}/Procedure?x=1", T0).dump()
    pages = list(src.pages("Procedure", patient_refs=["Patient/a"], since=None, resume=stale))
    assert len(pages) == 1 and len(responses.calls) == 1
    assert "x=1" not in responses.calls[0].request.url


@responses.activate
def test_complete_listing_only_for_a_full_fresh_pass(client: http.FhirClient) -> None:
    responses.get(f"{BASE}/Patient", json=bundle([]))
    responses.get(f"{BASE}/Procedure", json=bundle([]))
    src = source(client)
    list(src.patients())
    list(src.pages("Procedure", patient_refs=["Patient/a"], since=None, resume=None))
    assert src.complete_listing is True
    list(src.patients())
    list(
        src.pages(
            "Procedure", patient_refs=["Patient/a"], since=dt.datetime(2025, 1, 1, tzinfo=dt.UTC), resume=None
        )
    )
    assert src.complete_listing is False
