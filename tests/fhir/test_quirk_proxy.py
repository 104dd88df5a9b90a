"""The quirk proxy (tests/quirkproxy.py) does exactly what each quirk says, and nothing without quirks.

Issue 15.  Later tests of the adapter rely on the ``quirk_server`` fixture to
imitate real EHRs; these tests pin down, with plain HTTP requests through
the proxy against sekmet holding both demo sites plus non-roster patients,
that every quirk really happens (and is counted), that its answer is what
such a server would answer (real resources, consistent paging), and that
with no quirk the proxy answers byte for byte what the server answers.
"""

from __future__ import annotations

import csv
from typing import Any

import pytest
import requests

from adapter import paths

from quirkproxy import QUIRK_NAMES, Quirks, QuirkServer

LVEF = "http://loinc.org|10230-1"
WBC = "http://loinc.org|6690-2"  # 36 per roster patient: several pages
STRICT = {"Prefer": "handling=strict"}
UNKNOWN = "trial-adapter-unknown"
NORTH_MRN = "http://hospital-north.example/fhir/mrn"

http = requests.Session()


def get(url: str, params: Any = None, headers: dict[str, str] | None = None) -> requests.Response:
    return http.get(url, params=params, headers=headers, timeout=30)


def ok(url: str, params: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = get(url, params, headers)
    assert response.status_code == 200, response.text[:500]
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return dict(bundle)


def matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry") or [] if e.get("search", {}).get("mode") != "outcome"]


def ids(bundle: dict[str, Any]) -> list[str]:
    return [f"{r['resourceType']}/{r['id']}" for r in matches(bundle)]


def owner(resource: dict[str, Any]) -> str:
    if resource["resourceType"] == "Patient":
        return str(resource["id"])
    return str(resource["subject"]["reference"]).removeprefix("Patient/")


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((li["url"] for li in bundle.get("link", []) if li["relation"] == relation), None)


def walk(
    url: str, params: Any = None, headers: dict[str, str] | None = None, bypass: QuirkServer | None = None
) -> list[dict[str, Any]]:
    """Every page of a search, following the next links the server gives (around the proxy: ``bypass``)."""
    pages = [ok(url, params, headers)]
    while (following := link(pages[-1], "next")) is not None:
        if bypass is not None:  # the server's links name the proxy
            following = following.replace(bypass.url, bypass.direct_url, 1)
        pages.append(ok(following, headers=headers))
        assert len(pages) < 100, "the next links do not end"
    return pages


def all_ids(pages: list[dict[str, Any]]) -> list[str]:
    return [i for page in pages for i in ids(page)]


def comparable(response: requests.Response) -> tuple[int, Any]:
    """Status and body, without what differs between two identical searches (ids, timestamps)."""
    body = response.json()
    body.pop("id", None)
    if body.get("resourceType") == "CapabilityStatement":
        body.pop("date", None)  # now
    if body.get("resourceType") == "Bundle":
        body.pop("meta", None)
        for entry in body.get("entry") or []:  # sekmet's outcome entries get fresh ids too
            if entry["resource"]["resourceType"] == "OperationOutcome":
                entry["resource"].pop("id", None)
    return response.status_code, body


def roster_mrns(site: str) -> list[str]:
    with (paths.demo_data_dir() / site / "roster.csv").open() as roster:
        return [row["identifier_value"] for row in csv.DictReader(roster)]


def every_quirk() -> Quirks:
    return Quirks(
        next_drops_params=True,
        last_updated_ignored=True,
        or_list="first_only",
        extra_patients=True,
        extra_codes=True,
        count_cap=3,
        category_required=True,
        outcome_warning=True,
        strict_ignored=True,
    )


@pytest.fixture
def north(quirk_server: QuirkServer) -> list[str]:
    return quirk_server.roster_patients["demo-north"]


# ---------------------------------------------------------------------- the data and the plain proxy


def test_the_server_holds_both_demo_sites_and_foreign_patients_with_data(quirk_server: QuirkServer) -> None:
    assert {site: len(ids) for site, ids in quirk_server.roster_patients.items()} == {
        "demo-north": 4,
        "demo-east": 4,
    }
    enrolled = {p for ids in quirk_server.roster_patients.values() for p in ids}
    assert len(quirk_server.foreign_patients) == 5 and not enrolled & set(quirk_server.foreign_patients)
    everyone = ok(f"{quirk_server.direct_url}/Patient", {"_count": 100})
    assert {owner(r) for r in matches(everyone)} == enrolled | set(quirk_server.foreign_patients)
    observations = matches(ok(f"{quirk_server.direct_url}/Observation", {"_count": 5000}))
    foreign = [r for r in observations if owner(r) in quirk_server.foreign_patients]
    assert {owner(r) for r in foreign} == set(quirk_server.foreign_patients)  # every one has data
    assert sorted(r["id"] for r in foreign) == sorted(quirk_server.foreign["Observation"])
    for resource_type in ("MedicationAdministration", "Procedure"):
        assert len(quirk_server.foreign[resource_type]) >= 3


SEARCHES = [
    ("Observation", {"patient": "{0},{1}", "code": LVEF, "_count": "3"}, None),
    (
        "Observation",
        {"subject": "Patient/{0}", "category": "laboratory", "_count": "7", "_offset": "7"},
        None,
    ),
    ("Observation", {"patient": "{0}", "_lastUpdated": "gt2000-01-01T00:00:00Z"}, STRICT),
    ("Observation", {"patient": "{0}", UNKNOWN: "1"}, STRICT),  # sekmet refuses: 400
    ("Observation", {"patient": "{0}", UNKNOWN: "1"}, None),  # sekmet ignores it
    ("Patient", {"identifier": f"{NORTH_MRN}|NM0568407,{NORTH_MRN}|NM0166176"}, STRICT),
    ("MedicationAdministration", {"patient": "{0},{1}", "_count": "50"}, STRICT),
    ("Procedure", {"patient": "{1}"}, None),
]


@pytest.mark.parametrize(("resource_type", "template", "headers"), SEARCHES)
def test_without_quirks_the_proxy_answers_what_the_server_answers(
    quirk_server: QuirkServer,
    north: list[str],
    resource_type: str,
    template: dict[str, str],
    headers: dict[str, str] | None,
) -> None:
    params = {name: value.format(*north) for name, value in template.items()}
    through = get(f"{quirk_server.url}/{resource_type}", params, headers)
    direct = get(f"{quirk_server.direct_url}/{resource_type}", params, headers)
    assert comparable(through) == comparable(direct)
    assert through.status_code == (400 if headers and UNKNOWN in params else 200)
    assert not quirk_server.injected and not quirk_server.added
    assert quirk_server.requests == {f"GET /fhir/{resource_type}": 1}


def test_reads_transactions_and_metadata_pass_untouched_even_with_every_quirk(
    quirk_server: QuirkServer, north: list[str]
) -> None:
    quirk_server.quirks = every_quirk()
    for path in (f"Patient/{north[0]}", "metadata", "Observation/obs-foreign-01-01"):
        assert comparable(get(f"{quirk_server.url}/{path}")) == comparable(
            get(f"{quirk_server.direct_url}/{path}")
        )
    assert not quirk_server.injected
    assert quirk_server.requests["GET /fhir/metadata"] == 1


# ---------------------------------------------------------------------- one quirk at a time


def test_next_links_that_drop_the_search_parameters_lead_to_every_resource_on_the_server(
    quirk_server: QuirkServer, north: list[str]
) -> None:
    quirk_server.quirks.next_drops_params = True
    asked = {"patient": north[0], "code": WBC, "_count": "2"}
    first = ok(f"{quirk_server.url}/Observation", asked)
    wbc = "code=http%3A%2F%2Floinc.org%7C6690-2"
    assert (
        link(first, "self") == f"{quirk_server.url}/Observation?patient={north[0]}&{wbc}&_count=2&_offset=0"
    )
    assert link(first, "next") == f"{quirk_server.url}/Observation?_count=2&_offset=2"
    assert {owner(r) for r in matches(first)} == {north[0]}
    # The link is followed as given: the answer is the unfiltered search at that offset.
    second = ok(link(first, "next") or "")
    unfiltered = ok(f"{quirk_server.direct_url}/Observation", {"_count": "2", "_offset": "2"})
    assert ids(second) == ids(unfiltered) and second["total"] == unfiltered["total"]

    # Walking such a search reads, after its first page, every Observation on the server.
    every = ids(ok(f"{quirk_server.direct_url}/Observation", {"_count": "5000"}))
    pages = walk(f"{quirk_server.url}/Observation", {"patient": north[0], "code": WBC, "_count": "20"})
    got = all_ids(pages)
    assert {owner(r) for r in matches(pages[0])} == {north[0]}
    assert got[20:] == every[20:] and len(got) == len(every) > 700
    assert {f"Observation/{i}" for i in quirk_server.foreign["Observation"]} <= set(got)
    assert quirk_server.injected == {"next_drops_params": 2}  # the two first pages; later links had none
    assert quirk_server.requests["GET /fhir/Observation"] == 2 + len(pages)


def test_an_ignored_last_updated_brings_back_old_resources(
    quirk_server: QuirkServer, north: list[str]
) -> None:
    now = ok(f"{quirk_server.direct_url}/Patient", {"_count": "1"})["meta"]["lastUpdated"]
    asked = {"patient": north[0], "_lastUpdated": f"gt{now}", "_count": "200"}
    honoured = ok(f"{quirk_server.url}/Observation", asked)
    assert honoured["total"] == 0 and not matches(honoured)  # sekmet honours _lastUpdated

    quirk_server.quirks.last_updated_ignored = True
    ignored = ok(f"{quirk_server.url}/Observation", asked)
    everything = ok(f"{quirk_server.direct_url}/Observation", {"patient": north[0], "_count": "200"})
    assert ids(ignored) == ids(everything) and len(ids(ignored)) > 80
    assert all(r["meta"]["lastUpdated"] < now for r in matches(ignored))  # all older than asked
    assert "_lastUpdated=gt" in (link(ignored, "self") or "")  # the server claims to have applied it
    assert quirk_server.injected == {"last_updated_ignored": 1}


@pytest.mark.parametrize(
    ("resource_type", "name", "values"),
    [
        ("Observation", "patient", "{0},{1}"),
        ("MedicationAdministration", "subject", "Patient/{0},Patient/{1}"),
        ("Patient", "identifier", f"{NORTH_MRN}|NM0568407,{NORTH_MRN}|NM0166176"),
    ],
)
def test_or_lists_refused(
    quirk_server: QuirkServer, north: list[str], resource_type: str, name: str, values: str
) -> None:
    quirk_server.quirks.or_list = "refuse"
    refused = get(f"{quirk_server.url}/{resource_type}", {name: values.format(*north), "_count": "5"})
    assert refused.status_code == 400
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["severity"] == "error"
    assert name in outcome["issue"][0]["diagnostics"]
    single = values.split(",")[0].format(*north)
    assert matches(ok(f"{quirk_server.url}/{resource_type}", {name: single, "_count": "5"}))
    escaped = ok(f"{quirk_server.url}/Patient", {"identifier": f"{NORTH_MRN}|NM\\,0568407"})  # one value
    assert not matches(escaped)
    assert quirk_server.injected == {"or_list": 1}
    assert sum(quirk_server.requests.values()) == 3


def test_or_lists_answered_for_the_first_value_only(quirk_server: QuirkServer, north: list[str]) -> None:
    quirk_server.quirks.or_list = "first_only"
    both = ",".join(north[:2])
    pages = walk(f"{quirk_server.url}/Observation", {"patient": both, "_count": "30"})
    alone = walk(
        f"{quirk_server.direct_url}/Observation", {"patient": north[0], "_count": "30"}, bypass=quirk_server
    )
    assert all_ids(pages) == all_ids(alone) and len(pages) == len(alone) > 1
    assert pages[0]["total"] == alone[0]["total"]  # the answer looks complete
    assert all(f"patient={north[0]}%2C{north[1]}" in (link(page, "self") or "") for page in pages)
    assert quirk_server.injected == {"or_list": len(pages)}  # every page, through the next links

    patients = ok(
        f"{quirk_server.url}/Patient", {"identifier": f"{NORTH_MRN}|NM0568407,{NORTH_MRN}|NM0166176"}
    )
    assert [r["identifier"][0]["value"] for r in matches(patients)] == ["NM0568407"]


def test_patient_searches_answer_extra_patients(quirk_server: QuirkServer) -> None:
    asked = {"identifier": f"{NORTH_MRN}|NM0568407"}
    assert len(matches(ok(f"{quirk_server.url}/Patient", asked))) == 1

    quirk_server.quirks.extra_patients = True
    answer = ok(f"{quirk_server.url}/Patient", asked)
    found = matches(answer)
    assert found[0]["identifier"][0]["value"] == "NM0568407"
    extra = found[1:]
    assert len(extra) == 3 and answer["total"] == 4
    assert all(e["search"]["mode"] == "match" for e in answer["entry"])  # nothing marks them
    assert [f"Patient/{r['id']}" for r in extra] == quirk_server.added
    for resource in extra:  # real patients of the server, not made up
        assert get(f"{quirk_server.direct_url}/Patient/{resource['id']}").json() == resource
        assert resource["identifier"][0]["value"] != "NM0568407"
    assert quirk_server.injected == {"extra_patients": 1}


@pytest.mark.parametrize("resource_type", ["Observation", "MedicationAdministration", "Procedure"])
def test_data_searches_answer_other_patients_resources(
    quirk_server: QuirkServer, north: list[str], resource_type: str
) -> None:
    quirk_server.quirks.extra_patients = True
    asked = {"patient": ",".join(north[:2]), "_count": "10"}
    if resource_type == "Observation":
        asked["code"] = WBC
    first = ok(f"{quirk_server.url}/{resource_type}", asked)
    plain = ok(f"{quirk_server.direct_url}/{resource_type}", asked)
    assert ids(first)[: len(ids(plain))] == ids(plain)
    extra = matches(first)[len(ids(plain)) :]
    assert len(extra) == 3 and len({owner(r) for r in extra}) == 3  # round robin over other patients
    assert not {owner(r) for r in extra} & set(north[:2])
    assert [f"{resource_type}/{r['id']}" for r in extra] == quirk_server.added
    assert first["total"] == plain["total"] + 3
    for resource in extra:
        assert get(f"{quirk_server.direct_url}/{resource_type}/{resource['id']}").json() == resource
        if resource_type == "Observation":  # only the patient restriction was bent
            assert WBC in {f"{c['system']}|{c['code']}" for c in resource["code"]["coding"]}
    later = ok(link(first, "next") or "") if link(first, "next") else None
    if later is not None:  # only the first page gets extras
        assert {owner(r) for r in matches(later)} <= set(north[:2])
    assert quirk_server.injected == {"extra_patients": 1}


def test_an_unrestricted_search_gets_no_extra_resources(quirk_server: QuirkServer) -> None:
    quirk_server.quirks.extra_patients = True
    plain = ok(f"{quirk_server.direct_url}/Procedure", {"_count": "5"})
    assert ids(ok(f"{quirk_server.url}/Procedure", {"_count": "5"})) == ids(plain)
    assert not quirk_server.injected and not quirk_server.added


def test_observation_searches_ignore_the_code(quirk_server: QuirkServer, north: list[str]) -> None:
    quirk_server.quirks.extra_codes = True
    answer = ok(f"{quirk_server.url}/Observation", {"patient": north[0], "code": LVEF, "_count": "500"})
    everything = ok(f"{quirk_server.direct_url}/Observation", {"patient": north[0], "_count": "500"})
    assert ids(answer) == ids(everything)
    codes = {r["code"]["coding"][0]["code"] for r in matches(answer)}
    assert "10230-1" in codes and len(codes) > 5
    assert "code=http%3A%2F%2Floinc.org%7C10230-1" in (link(answer, "self") or "")
    # Other types keep their code parameter.
    procedures = ok(
        f"{quirk_server.url}/Procedure", {"patient": north[0], "code": "http://www.ama-assn.org/go/cpt|93306"}
    )
    assert {r["code"]["coding"][0]["code"] for r in matches(procedures)} == {"93306"}
    assert quirk_server.injected == {"extra_codes": 1}


def test_count_is_capped_silently_and_the_next_links_continue(
    quirk_server: QuirkServer, north: list[str]
) -> None:
    quirk_server.quirks.count_cap = 10
    asked = {"patient": north[0], "_count": "50"}
    pages = walk(f"{quirk_server.url}/Observation", asked)
    assert [len(matches(page)) for page in pages[:-1]] == [10] * (len(pages) - 1)
    assert link(pages[0], "next") == f"{quirk_server.url}/Observation?patient={north[0]}&_count=10&_offset=10"
    expected = ids(ok(f"{quirk_server.direct_url}/Observation", {**asked, "_count": "500"}))
    got = all_ids(pages)
    assert got == expected and len(set(got)) == len(got) > 80
    assert quirk_server.injected == {"count_cap": 1}  # later pages already ask for 10
    assert len(matches(ok(f"{quirk_server.url}/Observation", {"patient": north[0]}))) == 10  # default 20
    assert len(matches(ok(f"{quirk_server.url}/Observation", {"patient": north[0], "_count": "5"}))) == 5
    assert quirk_server.injected == {"count_cap": 2}


def test_observation_searches_without_category_are_refused(
    quirk_server: QuirkServer, north: list[str]
) -> None:
    quirk_server.quirks.category_required = True
    refused = get(f"{quirk_server.url}/Observation", {"patient": north[0], "code": LVEF})
    assert refused.status_code == 400
    issue = refused.json()["issue"][0]
    assert issue["severity"] == "error" and issue["code"] == "required" and "category" in issue["diagnostics"]
    labs = ok(
        f"{quirk_server.url}/Observation", {"patient": north[0], "category": "laboratory", "_count": "200"}
    )
    assert len(matches(labs)) > 50
    assert {r["category"][0]["coding"][0]["code"] for r in matches(labs)} == {"laboratory"}
    assert matches(ok(f"{quirk_server.url}/MedicationAdministration", {"patient": north[0]}))
    assert quirk_server.injected == {"category_required": 1}
    assert quirk_server.requests["GET /fhir/Observation"] == 2


def test_every_searchset_page_carries_a_warning_outcome(quirk_server: QuirkServer, north: list[str]) -> None:
    quirk_server.quirks.outcome_warning = True
    pages = walk(f"{quirk_server.url}/Observation", {"patient": north[0], "_count": "40"})
    direct = ok(f"{quirk_server.direct_url}/Observation", {"patient": north[0], "_count": "500"})
    assert all_ids(pages) == ids(direct) and len(pages) == 3
    for page in pages:
        last = page["entry"][-1]
        assert last["search"] == {"mode": "outcome"}
        assert last["resource"]["resourceType"] == "OperationOutcome"
        assert last["resource"]["issue"][0]["severity"] == "warning"
    empty = ok(f"{quirk_server.url}/Observation", {"patient": "no-such-patient"})
    assert [e["search"]["mode"] for e in empty["entry"]] == ["outcome"]
    refused = get(f"{quirk_server.url}/Observation", {UNKNOWN: "1"}, STRICT)
    assert refused.status_code == 400  # error answers are not bundles: untouched
    assert quirk_server.injected == {"outcome_warning": len(pages) + 1}


def test_strict_handling_ignored(quirk_server: QuirkServer, north: list[str]) -> None:
    asked = {"patient": north[0], UNKNOWN: "1", "_count": "100"}
    refused = get(f"{quirk_server.url}/Observation", asked, STRICT)
    assert refused.status_code == 400  # sekmet honours Prefer: handling=strict
    assert UNKNOWN in refused.json()["issue"][0]["diagnostics"]

    quirk_server.quirks.strict_ignored = True
    answer = ok(f"{quirk_server.url}/Observation", asked, STRICT)
    without = ok(f"{quirk_server.direct_url}/Observation", {"patient": north[0], "_count": "100"})
    assert ids(answer) == ids(without)
    assert len(answer["entry"]) == len(matches(answer))  # silently: sekmet's warning entry is gone
    assert UNKNOWN not in (link(answer, "self") or "")  # sekmet's lenient self link leaves it out
    lenient = ok(f"{quirk_server.url}/Observation", asked)  # sekmet's own lenient answer says so
    assert "parameter ignored" in lenient["entry"][-1]["resource"]["issue"][0]["diagnostics"]
    ok(f"{quirk_server.url}/Observation", {"patient": north[0]}, STRICT)  # nothing to ignore
    assert quirk_server.injected == {"strict_ignored": 1}


# ---------------------------------------------------------------------- together, and the fixture


def test_quirks_combine(quirk_server: QuirkServer, north: list[str]) -> None:
    quirk_server.quirks = Quirks(count_cap=5, next_drops_params=True, last_updated_ignored=True)
    answer = ok(
        f"{quirk_server.url}/Observation",
        {"patient": north[0], "_lastUpdated": "gt2999-01-01T00:00:00Z", "_count": "50"},
    )
    assert len(matches(answer)) == 5 and {owner(r) for r in matches(answer)} == {north[0]}
    assert link(answer, "next") == f"{quirk_server.url}/Observation?_count=5&_offset=5"
    assert quirk_server.injected == {"count_cap": 1, "next_drops_params": 1, "last_updated_ignored": 1}


def test_reset_switches_every_quirk_off_and_forgets_the_counts(
    quirk_server: QuirkServer, north: list[str]
) -> None:
    quirk_server.quirks = every_quirk()
    assert quirk_server.quirks.active() == list(QUIRK_NAMES)
    assert get(f"{quirk_server.url}/Observation", {"patient": north[0]}).status_code == 400  # no category
    assert quirk_server.injected and quirk_server.requests and quirk_server.proxy.trace
    quirk_server.reset()
    assert quirk_server.quirks == Quirks() and not quirk_server.quirks.active()
    assert not quirk_server.injected and not quirk_server.requests and not quirk_server.added
    assert ok(f"{quirk_server.url}/Patient", {"identifier": f"{NORTH_MRN}|{roster_mrns('demo-north')[0]}"})
