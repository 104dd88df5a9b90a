"""`check`'s behaviour probes (adapter/fhir/probe/): each quirk found, named, and its setting given.

A small fake FHIR server (``FakeServer``, mocked with ``responses``) answers
the probes' searches from a handful of resources and can be switched to
each quirk the probes look for; one test runs the probes against the real
local server (sekmet), which behaves, and through ``trial-adapter check``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from adapter import paths
from adapter import roster as roster_mod
from adapter.cli import check_cmd
from adapter.fhir import capability, http, probe, search_terms
from adapter.fhir import settings as fhir_settings
from adapter.fhir.check_row import CheckRow
from adapter.mapping import catalog as catalog_mod
from adapter.mapping import discovery
from adapter.service import checks
from adapter.sync import SiteSetup

from fhirserver import FhirServer
from fhirtesting import BASE, Sleeps, server_config

MRN = "http://hospital-north.example/fhir/mrn"
OTHER_CODE = ("http://loinc.org", "0000-0")  # a code the catalog does not map
STAMP = "2025-01-01T00:00:00.000Z"  # every resource's meta.lastUpdated
NOW = "2025-06-01T10:00:00.000Z"  # the server's time
# Roster patients: (patient id, MRN, Observations, MedicationAdministrations); the first has two
# Observations of a code the catalog does not map.  The stranger is not on the roster.
PATIENTS = [("pat-01", "NM0000001", 5, 2), ("pat-02", "NM0000002", 3, 0), ("pat-03", "NM0000003", 4, 1)]
STRANGER = ("pat-09", "NM0000009", 6, 3)


@dataclass
class FakeServer:
    """A FHIR search API over a few resources, with switchable quirks; see ``handle``."""

    code: tuple[str, str]
    quirks: set[str] = field(default_factory=set)
    cap: int | None = None  # largest _count honoured
    resources: list[dict[str, Any]] = field(default_factory=list)
    searches: dict[str, dict[str, str]] = field(default_factory=dict)  # opaque continuation tokens
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for patient, mrn, observations, administrations in [*PATIENTS, STRANGER]:
            self.resources.append(
                {
                    "resourceType": "Patient",
                    "id": patient,
                    "meta": {"lastUpdated": STAMP},
                    "identifier": [{"system": MRN, "value": mrn}],
                }
            )
            for n in range(observations):
                code = self.code if n % 2 == 0 or patient != "pat-01" else OTHER_CODE
                self.resources.append(
                    {
                        "resourceType": "Observation",
                        "id": f"{patient}-obs-{n}",
                        "meta": {"lastUpdated": STAMP},
                        "status": "final",
                        "category": [{"coding": [{"code": "laboratory"}]}],
                        "code": {"coding": [{"system": code[0], "code": code[1]}]},
                        "subject": {"reference": f"Patient/{patient}"},
                    }
                )
            for n in range(administrations):
                self.resources.append(
                    {
                        "resourceType": "MedicationAdministration",
                        "id": f"{patient}-ma-{n}",
                        "meta": {"lastUpdated": STAMP},
                        "status": "completed",
                        "subject": {"reference": f"Patient/{patient}"},
                    }
                )

    # ------------------------------------------------------------ answers

    def handle(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        url = str(request.url)
        self.requests.append(url)
        parts = urllib.parse.urlsplit(url)
        params = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        resource_type = parts.path.rstrip("/").rsplit("/", 1)[-1]
        if "_getpages" in params:  # an opaque continuation: the search is kept here
            kept = self.searches[params["_getpages"]]
            resource_type, offset = kept["_type"], params["_getpagesoffset"]
            params = {k: v for k, v in kept.items() if k != "_type"}
            params["_offset"] = offset
            if "opaque-broken" in self.quirks:
                params = {"_count": params["_count"], "_offset": offset}
        if "fail" in self.quirks and "_lastUpdated" in params:
            return 503, {}, ""
        strict = request.headers.get("Prefer") == "handling=strict"
        unknown = [p for p in params if p not in KNOWN_PARAMS]
        if unknown and strict and "strict-ignored" not in self.quirks:
            return outcome(400, f"unknown search parameter {unknown[0]}")
        patients = params.get("patient", "").split(",") if "patient" in params else None
        identifiers = params.get("identifier", "").split(",") if "identifier" in params else None
        if identifiers and len(identifiers) > 1:
            if "identifier-or-400" in self.quirks:
                return outcome(400, f"only one identifier per search, got {params['identifier']}")
            if "identifier-or-first" in self.quirks:
                identifiers = identifiers[:1]
        if patients and len(patients) > 1:
            if "patient-or-400" in self.quirks:
                return outcome(400, f"one patient per search, not {params['patient']}")
            if "patient-or-first" in self.quirks:
                patients = patients[:1]
            if "patient-or-extra" in self.quirks:
                patients = [*patients, STRANGER[0]]
        if "patient-ignored" in self.quirks:
            patients = None
        if (
            "category-required" in self.quirks
            and resource_type == "Observation"
            and patients
            and "category" not in params
        ):
            return outcome(400, "category is required with patient")
        if "_lastUpdated" in params and "last-updated-400" in self.quirks:
            return outcome(400, "_lastUpdated is not supported")
        found = [
            r
            for r in self.resources
            if r["resourceType"] == resource_type
            and (
                patients is None
                or r.get("subject", {}).get("reference") in {f"Patient/{p}" for p in patients}
            )
            and (identifiers is None or self._carries(r, identifiers))
            and ("code" not in params or self._has_code(r, params["code"]))
            and ("_lastUpdated" not in params or "last-updated-ignored" in self.quirks or _after(r, params))
            and ("category" not in params or "laboratory" in params["category"])
        ]
        if identifiers is not None and "identifier-extra" in self.quirks:
            found.append(next(r for r in self.resources if r.get("id") == STRANGER[0]))
        asked = int(params.get("_count", "100"))
        count = min(asked, self.cap) if self.cap else asked
        offset = int(params.get("_offset", "0"))
        page = found[offset : offset + count]
        body: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "meta": {"lastUpdated": NOW},
            "total": len(found),
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in page],
            "link": [{"relation": "self", "url": url}],
        }
        if offset + count < len(found) and "cap-no-next" not in self.quirks:
            body["link"].append(
                {"relation": "next", "url": self._next(resource_type, params, offset + count)}
            )
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(body)

    def _next(self, resource_type: str, params: dict[str, str], offset: int) -> str:
        if "next-drops" in self.quirks:
            return f"{BASE}/{resource_type}?_count={params['_count']}&_offset={offset}"
        if {"opaque", "opaque-broken"} & self.quirks:
            token = f"t{len(self.searches)}"
            self.searches[token] = {
                **{k: v for k, v in params.items() if k != "_offset"},
                "_type": resource_type,
            }
            return f"{BASE}?_getpages={token}&_getpagesoffset={offset}&_count={params['_count']}"
        return f"{BASE}/{resource_type}?{urllib.parse.urlencode({**params, '_offset': str(offset)})}"

    @staticmethod
    def _carries(resource: dict[str, Any], tokens: list[str]) -> bool:
        return any(f"{i['system']}|{i['value']}" in tokens for i in resource.get("identifier", []))

    @staticmethod
    def _has_code(resource: dict[str, Any], codes: str) -> bool:
        wanted = set(codes.split(","))
        return any(f"{c['system']}|{c['code']}" in wanted for c in resource.get("code", {}).get("coding", []))


KNOWN_PARAMS = {"patient", "identifier", "code", "category", "_lastUpdated", "_count", "_offset", "_id"}


def outcome(status: int, text: str) -> tuple[int, dict[str, str], str]:
    body = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "diagnostics": text}]}
    return status, {"Content-Type": "application/fhir+json"}, json.dumps(body)


def _after(resource: dict[str, Any], params: dict[str, str]) -> bool:
    asked = dt.datetime.fromisoformat(params["_lastUpdated"][2:].replace("Z", "+00:00"))
    return dt.datetime.fromisoformat(resource["meta"]["lastUpdated"].replace("Z", "+00:00")) > asked


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def catalog() -> catalog_mod.Catalog:
    return catalog_mod.load_catalog(paths.default_mappings_dir(), "demo-north")


@pytest.fixture
def fake(catalog: catalog_mod.Catalog) -> Iterator[FakeServer]:
    first = search_terms.code_tokens(discovery.source_wanted(catalog).codes["Observation"])[0]
    system, _, code = first.partition("|")
    server = FakeServer(code=(system, code))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.add_callback(
            responses.GET, re.compile(re.escape(BASE) + r"(/.*)?(\?.*)?$"), callback=server.handle
        )
        yield server


ROSTER = roster_mod.Roster(
    roster_mod.RosterEntry(MRN, mrn, f"S-{patient}", dt.date(2025, 1, 1)) for patient, mrn, _, _ in PATIENTS
)
SENSITIVE = [value for p in [*PATIENTS, STRANGER] for value in p[:2]]


def run(
    client: http.FhirClient, catalog: catalog_mod.Catalog, budget: float = 60.0, **settings: Any
) -> dict[str, CheckRow]:
    server = fhir_settings.RestSource(kind="fhir-rest", base_url=BASE, **settings)
    rows = probe.probe_server(
        "test-site",
        server,
        client,
        roster=ROSTER,
        wanted=discovery.source_wanted(catalog),
        budget_seconds=budget,
    )
    for row in rows:  # never a patient id or an MRN, whatever the server said
        assert not [value for value in SENSITIVE if value in row.detail], row
    return {row.item: row for row in rows}


def green(row: CheckRow) -> bool:
    return row.ok and not row.warning


def red(row: CheckRow) -> bool:
    return not row.ok


def warned(row: CheckRow) -> bool:
    return row.ok and row.warning


# ------------------------------------------------------------------ tests


def test_a_well_behaved_server_is_all_green(
    fake: FakeServer, client: http.FhirClient, catalog: catalog_mod.Catalog
) -> None:
    rows = run(client, catalog, page_size=5)
    assert list(rows) == [
        probe.ITEM_IDENTIFIERS,
        probe.ITEM_PATIENTS,
        probe.ITEM_LAST_UPDATED,
        probe.ITEM_COUNT,
        probe.ITEM_NEXT_LINKS,
        probe.ITEM_CATEGORY,
        probe.ITEM_STRICT,
        probe.ITEM_FIT,
    ]
    assert all(green(row) for row in rows.values()), rows
    assert "found the same 3 patients" in rows[probe.ITEM_IDENTIFIERS].detail
    assert "answered the same 10 resources as one search per patient" in rows[probe.ITEM_PATIENTS].detail
    assert "honoured" in rows[probe.ITEM_LAST_UPDATED].detail
    assert (
        "honours _count = 5 (page_size); asked for 1000, a page held all 10 results"
        in rows[probe.ITEM_COUNT].detail
    )
    assert "keep the search parameters" in rows[probe.ITEM_NEXT_LINKS].detail
    assert "not required" in rows[probe.ITEM_CATEGORY].detail
    assert "honoured" in rows[probe.ITEM_STRICT].detail
    assert len(fake.requests) <= 25  # cheap: a handful of small searches


def test_an_or_list_of_identifiers_refused_or_answered_in_part(
    fake: FakeServer, client: http.FhirClient, catalog: catalog_mod.Catalog
) -> None:
    fake.quirks = {"identifier-or-400"}  # its message echoes the identifiers: they must not show
    row = run(client, catalog)[probe.ITEM_IDENTIFIERS]
    assert red(row) and "was refused (400" in row.detail and row.detail.endswith("set patient_batch_size = 1")
    row = run(client, catalog, patient_batch_size=1)[probe.ITEM_IDENTIFIERS]
    assert green(row) and "patient_batch_size = 1 already searches one identifier at a time" in row.detail

    fake.quirks = {"identifier-or-first"}
    row = run(client, catalog)[probe.ITEM_IDENTIFIERS]
    assert red(row) and "answers only part of an OR-list" in row.detail and "found 1 of the 3" in row.detail
    assert "set patient_batch_size = 1" in row.detail


def test_extra_patients_not_asked_for_are_a_warning(
    fake: FakeServer, client: http.FhirClient, catalog: catalog_mod.Catalog
) -> None:
    fake.quirks = {"identifier-extra"}
    rows = run(client, catalog)
    row = rows[probe.ITEM_IDENTIFIERS]
    assert warned(row) and "returns patients that were not asked for" in row.detail
    assert "the adapter drops them" in row.detail
    assert green(rows[probe.ITEM_PATIENTS])  # the stranger's data was never searched


@pytest.mark.parametrize(
    ("quirk", "finding"),
    [
        ("patient-or-400", "was refused (400"),
        ("patient-or-first", "answers only part of an OR-list of patients"),
        ("patient-or-extra", "resource(s) of patients that were not asked for"),
    ],
)
def test_an_or_list_of_patients_that_fails_asks_for_batch_size_one(
    fake: FakeServer, client: http.FhirClient, catalog: catalog_mod.Catalog, quirk: str, finding: str
) -> None:
    fake.quirks = {quirk}
    rows = run(client, catalog)
    row = rows[probe.ITEM_PATIENTS]
    assert red(row) and finding in row.detail and row.detail.endswith("set patient_batch_size = 1"), row
    assert green(rows[probe.ITEM_FIT])  # one-patient searches are fine
    row = run(client, catalog, patient_batch_size=1)[probe.ITEM_PATIENTS]
    assert green(row) and finding in row.detail and "already searches one patient at a time" in row.detail


def test_a_server_ignoring_the_patient_parameter_is_red_without_a_setting(
    fake: FakeServer, client: http.FhirClient, catalog: catalog_mod.Catalog
) -> None:
    fake.quirks = {"patient-ignored"}
    rows = run(client, catalog, patient_batch_size=1)
    assert (
        red(rows[probe.ITEM_PATIENTS]) and "ignores the patient parameter" in rows[probe.ITEM_PATIENTS].detail
    )
    assert red(rows[probe.ITEM_FIT]) and "patients that were not asked for" in rows[probe.ITEM_FIT].detail


@pytest.mark.parametrize(
    ("quirk", "finding"),
    [("last-updated-ignored", "the server ignores _lastUpdated"), ("last-updated-400", "was refused (400")],
)
def test_last_updated_ignored_or_refused_asks_for_incremental_false(
    fake: FakeServer, client: http.FhirClient, catalog: catalog_mod.Catalog, quirk: str, finding: str
) -> None:
    fake.quirks = {quirk}
    row = run(client, catalog)[probe.ITEM_LAST_UPDATED]
    assert red(row) and finding in row.detail and "set incremental = false" in row.detail
    assert "fhir-bulk" in row.detail
    row = run(client, catalog, incremental=False)[probe.ITEM_LAST_UPDATED]
    assert green(row) and finding in row.detail and "incremental = false already" in row.detail


def test_a_capped_count_is_named_with_the_page_size_to_set(
    fake: FakeServer, client: http.FhirClient, catalog: catalog_mod.Catalog
) -> None:
    fake.cap = 4
    rows = run(client, catalog, page_size=10)
    row = rows[probe.ITEM_COUNT]
    assert warned(row) and "caps _count at 4" in row.detail and "set page_size = 4" in row.detail
    assert green(rows[probe.ITEM_PATIENTS])  # the comparison follows the next links

    fake.cap, fake.quirks = 2, {"cap-no-next"}
    row = run(client, catalog, page_size=10)[probe.ITEM_COUNT]
    assert red(row) and "no next link: the rest would never be read" in row.detail

    fake.cap, fake.quirks = None, set()
    row = run(client, catalog, page_size=100)[probe.ITEM_COUNT]
    assert green(row) and "no cap seen: a page held all 10 results" in row.detail


def test_next_links_that_drop_the_search_are_repaired_or_refused(
    fake: FakeServer, client: http.FhirClient, catalog: catalog_mod.Catalog
) -> None:
    fake.quirks = {"next-drops"}
    row = run(client, catalog)[probe.ITEM_NEXT_LINKS]
    assert green(row) and "next links drop the search parameters (patient, code)" in row.detail
    assert 'next_links = "repair" puts them back' in row.detail
    row = run(client, catalog, next_links="refuse")[probe.ITEM_NEXT_LINKS]
    assert (
        red(row) and 'next_links = "refuse" stops' in row.detail and 'set next_links = "repair"' in row.detail
    )


def test_opaque_next_links_are_fine_when_their_pages_fit(
    fake: FakeServer, client: http.FhirClient, catalog: catalog_mod.Catalog
) -> None:
    fake.quirks = {"opaque"}
    row = run(client, catalog)[probe.ITEM_NEXT_LINKS]
    assert green(row) and "opaque continuations" in row.detail and "fits the search" in row.detail
    fake.quirks = {"opaque-broken"}
    row = run(client, catalog)[probe.ITEM_NEXT_LINKS]
    assert (
        red(row) and "the second page holds 2 resource(s) of patients that were not asked for" in row.detail
    )
    assert "though its next link is an opaque continuation" in row.detail


def test_a_required_category_asks_for_observation_category(
    fake: FakeServer, client: http.FhirClient, catalog: catalog_mod.Catalog
) -> None:
    fake.quirks = {"category-required"}
    rows = run(client, catalog)
    row = rows[probe.ITEM_CATEGORY]
    assert red(row) and "refused without category" in row.detail and "set observation_category" in row.detail
    # The other probes searched what needs no category instead of blaming the OR-list.
    assert green(rows[probe.ITEM_PATIENTS]) and "MedicationAdministration" in rows[probe.ITEM_PATIENTS].detail
    rows = run(client, catalog, observation_category=("laboratory",))
    row = rows[probe.ITEM_CATEGORY]
    assert (
        green(row)
        and "required" in row.detail
        and "observation_category = ['laboratory'] sends it" in row.detail
    )
    assert "Observation" in rows[probe.ITEM_PATIENTS].detail


def test_strict_handling_ignored_is_a_warning(
    fake: FakeServer, client: http.FhirClient, catalog: catalog_mod.Catalog
) -> None:
    fake.quirks = {"strict-ignored"}
    row = run(client, catalog)[probe.ITEM_STRICT]
    assert warned(row)
    assert "ignores parameters it does not support" in row.detail
    assert "the adapter checks every result against its query" in row.detail


def test_a_failing_probe_is_one_row_and_the_time_limit_holds(
    fake: FakeServer, client: http.FhirClient, catalog: catalog_mod.Catalog, sleeps: Sleeps
) -> None:
    fake.quirks = {"fail"}
    rows = run(client, catalog)
    row = rows[probe.ITEM_LAST_UPDATED]
    assert warned(row) and row.detail.startswith("could not run:") and "503" in row.detail
    assert len(sleeps) == 1  # two tries, not the sync's five
    assert green(rows[probe.ITEM_NEXT_LINKS])  # the others still ran

    rows = run(client, catalog, budget=0.0)
    assert all(warned(row) for row in rows.values()) and "time limit" in rows[probe.ITEM_ROSTER].detail
    assert list(rows) == [probe.ITEM_ROSTER, probe.ITEM_STRICT]


def test_roster_patients_not_on_the_server_skip_the_patient_probes(
    client: http.FhirClient, catalog: catalog_mod.Catalog
) -> None:
    with responses.RequestsMock() as mocked:
        empty = {"resourceType": "Bundle", "type": "searchset", "total": 0}
        mocked.get(f"{BASE}/Patient", json=empty)
        started = time.monotonic()
        rows = run(client, catalog)
    assert time.monotonic() - started < 5
    assert (
        warned(rows[probe.ITEM_ROSTER])
        and "none of the first 3 roster identifiers" in rows[probe.ITEM_ROSTER].detail
    )
    assert set(rows) == {probe.ITEM_ROSTER, probe.ITEM_STRICT}
    assert warned(rows[probe.ITEM_STRICT])  # this mock answers anything


# ------------------------------------------------------------ real server


def test_a_well_behaved_real_server_gets_an_all_ok_behaviour_table(
    demo_server: FhirServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = server_config(tmp_path, demo_server.base_url, ("demo-north",))
    setup = SiteSetup.load(config, config.sites[0])
    rows = capability.check_server(
        "demo-north",
        config.sites[0].source,
        roster=setup.roster,
        wanted=discovery.source_wanted(setup.catalog),
    )
    behaviour = {row.item: row for row in rows if row.item.startswith("behaviour:")}
    assert set(behaviour) == {
        probe.ITEM_IDENTIFIERS,
        probe.ITEM_PATIENTS,
        probe.ITEM_LAST_UPDATED,
        probe.ITEM_COUNT,
        probe.ITEM_NEXT_LINKS,
        probe.ITEM_CATEGORY,
        probe.ITEM_STRICT,
        probe.ITEM_FIT,
    }
    assert all(green(row) for row in behaviour.values()), behaviour
    assert [row.item for row in rows].index(probe.ITEM_IDENTIFIERS) > [row.item for row in rows].index(
        "auth (none)"
    )

    # And as `trial-adapter check` prints it: a table row each, no failure, no exit code.
    found = checks.run_checks(config)
    check_cmd.print_checks(found)
    assert found.failures == []
    out = capsys.readouterr().out
    assert "behaviour: next links" in out and "behaviour: strict handling" in out
    assert "failed" not in out and "warning" not in out
