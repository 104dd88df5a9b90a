"""Size caps on what a site sends: a line, a resource, an answer (issue 14, finding 6).

A site once sent a 50 MB valueString; nothing capped it, and the console's
worklist grew to 52 MB.  Now an NDJSON line or a search entry larger than
``max_resource_bytes`` becomes an ``invalid_resource`` issue that names the
file and line (or the resource) and the size, never the content, and is
read without holding it whole; an answer larger than ``max_response_bytes``
stops the pass with an error naming the URL and the limit.
"""

from __future__ import annotations

import datetime as dt
import io
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import responses
import sqlalchemy as sa

from adapter import config as config_mod
from adapter import errors, paths
from adapter import roster as roster_mod
from adapter.fhir import bulk, bundles, http, ndjson, rest
from adapter.fhir import settings as fhir_settings
from adapter.fhir.source import BadLine, Page, SourceLine
from adapter.mapping import catalog as catalog_mod
from adapter.mapping import discovery
from adapter.store import db, models
from adapter.sync import TOO_LARGE, SiteSetup, sync_site

from fhirtesting import BASE, TEST_SECRET

MRN = "urn:test:mrn"
CONTENT_MARKER = "site-content-marker"  # inside the large values: must never reach an issue or the store


def observation(identifier: str, *, text_bytes: int = 0, value: float = 1.0) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": identifier,
        "meta": {"versionId": "1"},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-03-01T10:00:00+08:00",
        "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org"},
    }
    if text_bytes:
        resource["note"] = [{"text": CONTENT_MARKER + "x" * text_bytes}]
    return resource


# ------------------------------------------------------------------ NDJSON lines


def test_a_line_over_the_limit_is_a_bad_line_naming_file_line_and_size(tmp_path: Path) -> None:
    big = orjson.dumps(observation("o2", text_bytes=3000))
    lines = [orjson.dumps(observation("o1")), big, b"", orjson.dumps(observation("o3"))]
    (tmp_path / "Observation.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    read = list(ndjson.read_resources(tmp_path, "Observation", max_bytes=2048))
    assert [type(line).__name__ for line in read] == ["SourceLine", "BadLine", "SourceLine"]
    bad = read[1]
    assert isinstance(bad, BadLine)
    assert bad.location == "Observation.ndjson:2"  # line numbers as an editor shows them
    assert f"{len(big):,} bytes" in bad.problem and "2,048" in bad.problem
    assert "max_resource_bytes" in bad.problem
    assert CONTENT_MARKER not in bad.problem
    assert isinstance(read[2], SourceLine) and read[2].location == "Observation.ndjson:4"
    assert ndjson.count_lines(tmp_path, ("Observation",), max_bytes=2048) == 3


def test_a_huge_line_is_read_in_bounded_memory() -> None:
    """A 40 MB line (no newline in sight) costs no more memory than the limit, never the line."""
    huge = b'{"resourceType":"Observation","id":"o1","note":[{"text":"' + b"x" * (40 << 20) + b'"}]}\n'
    handle = io.BytesIO(huge + b'{"resourceType":"Observation","id":"o2"}\n')
    tracemalloc.start()
    try:
        read = list(ndjson.bounded_lines(handle, 1 << 20))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(number, line is None, size) for number, line, size in read[:1]] == [(1, True, len(huge) - 1)]
    assert read[1][1] is not None and b'"o2"' in read[1][1]
    assert peak < 4 << 20, f"peak {peak:,} bytes while reading a {len(huge):,}-byte line"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"abc\n", [(1, b"abc\n", 3)]),
        (b"abc", [(1, b"abc", 3)]),  # the last line without a newline
        (b"a" * 8 + b"\r\n", [(1, b"a" * 8 + b"\r\n", 8)]),  # exactly the limit, CRLF
        (b"a" * 9 + b"\n", [(1, None, 9)]),
        (b"a" * 9 + b"\r\n" + b"b\n", [(1, None, 9), (2, b"b\n", 1)]),
        (b"a" * 30, [(1, None, 30)]),
        (b"\n\nx\n", [(1, b"\n", 0), (2, b"\n", 0), (3, b"x\n", 1)]),
    ],
)
def test_bounded_lines_edges(data: bytes, expected: list[tuple[int, bytes | None, int]]) -> None:
    assert list(ndjson.bounded_lines(io.BytesIO(data), 8)) == expected


def test_a_bulk_export_file_is_read_with_the_same_limit(tmp_path: Path) -> None:
    lines = [orjson.dumps(observation("o1")), orjson.dumps(observation("o2", text_bytes=5000))]
    (tmp_path / "Observation.001.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    read = list(bulk.lines_for_patients(tmp_path, "Observation", {"Patient/p1"}, max_bytes=4096))
    assert isinstance(read[0], SourceLine)
    assert isinstance(read[1], BadLine) and read[1].location == "Observation.001.ndjson:2"


# ------------------------------------------------------------------ search results


def search_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "meta": {"lastUpdated": "2025-06-01T10:00:00Z"},
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }


@responses.activate
def test_a_search_entry_over_the_limit_is_named_not_handed_on() -> None:
    client = http.FhirClient("test-site", BASE, max_resource_bytes=4096)
    body = search_bundle([observation("small"), observation("big", text_bytes=10_000)])
    responses.get(f"{BASE}/Observation", json=body)
    page = bundles.read_page(client, "Observation", resource_type="Observation")
    small, big = page.lines
    assert isinstance(small, SourceLine) and small.resource["id"] == "small"
    assert isinstance(big, BadLine)
    assert big.ref == "Observation/big" and big.location == "Observation/big"
    assert big.patient_ref == "Patient/p1"
    assert "max_resource_bytes" in big.problem and CONTENT_MARKER not in big.problem


@responses.activate
def test_an_answer_over_the_limit_stops_the_pass_with_the_url_and_limit() -> None:
    client = http.FhirClient("test-site", BASE, max_body_bytes=64 * 1024)
    body = search_bundle([observation(f"o{i}", text_bytes=2000) for i in range(60)])
    responses.get(f"{BASE}/Observation", json=body)
    with pytest.raises(errors.SourceError) as caught:
        bundles.read_page(client, "Observation", resource_type="Observation", params={"patient": "p1"})
    message = str(caught.value)
    assert "max_response_bytes" in message and "65,536 bytes" in message
    assert "Observation?patient=…(1)" in message
    assert CONTENT_MARKER not in message and "p1" not in message


@responses.activate
def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    client = http.FhirClient("test-site", BASE, max_body_bytes=64 * 1024)
    responses.get(f"{BASE}/metadata", body=b"{}", headers={"Content-Length": str(10 << 30)})
    with pytest.raises(errors.SourceError, match="10,737,418,240 bytes"):
        client.get_json("metadata")


@responses.activate
def test_an_error_body_is_read_only_as_far_as_its_start() -> None:
    client = http.FhirClient("test-site", BASE, max_body_bytes=64 * 1024)
    responses.get(f"{BASE}/Observation", status=400, body=b"no such parameter " + b"x" * (1 << 20))
    with pytest.raises(errors.FatalNetworkError) as caught:
        client.get_json("Observation")
    assert "no such parameter" in str(caught.value) and len(str(caught.value)) < 1000


def test_the_caps_are_configurable_per_source_with_defaults() -> None:
    rest_source = fhir_settings.RestSource(kind="fhir-rest", base_url=BASE)
    assert rest_source.max_resource_bytes == 1 << 20 and rest_source.max_response_bytes == 64 << 20
    assert fhir_settings.NdjsonSource(kind="ndjson", path=Path("x")).max_resource_bytes == 1 << 20
    with pytest.raises(ValueError, match="max_response_bytes is smaller"):
        fhir_settings.RestSource(
            kind="fhir-rest", base_url=BASE, max_resource_bytes=8 << 20, max_response_bytes=1 << 20
        )
    with pytest.raises(errors.ConfigError, match="max_resource_bytes"):
        config_mod.config_from_dict(
            {
                "sites": [
                    {
                        "id": "a",
                        "timezone": "UTC",
                        "roster": "r.csv",
                        "source": {"kind": "ndjson", "path": "data", "max_resource_bytes": 10},
                    }
                ],
                "repository": {"kind": "file", "path": "out"},
            },
            base_dir=Path("."),
        )


# ------------------------------------------------------------------ through the sync


class ScriptedSource:
    """A source whose Observation pages are given: what ``bundles`` hands on for a REST site."""

    complete_listing = False

    def __init__(self, observations: list[SourceLine | BadLine]) -> None:
        self.observations = observations

    def patients(self) -> Iterator[SourceLine | BadLine]:
        patient = {"resourceType": "Patient", "id": "p1", "identifier": [{"system": MRN, "value": "M1"}]}
        yield SourceLine("Patient", patient, "Patient/p1")

    def pages(
        self,
        resource_type: str,
        *,
        patient_refs: Sequence[str],
        since: dt.datetime | None,
        resume: str | None,
    ) -> Iterator[Page]:
        yield Page(lines=list(self.observations) if resource_type == "Observation" else [])

    def expected_total(self) -> int | None:
        return None


def site_setup(tmp_path: Path) -> tuple[SiteSetup, Any]:
    (tmp_path / "roster.csv").write_text(
        f"identifier_system,identifier_value,subject_id,enrolment_date\n{MRN},M1,S-1,2025-03-10\n"
    )
    (tmp_path / "key").write_text(TEST_SECRET)
    config = config_mod.config_from_dict(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
            "privacy": {"hmac_key_file": str(tmp_path / "key")},
            "sites": [
                {
                    "id": "capped",
                    "timezone": "Asia/Shanghai",
                    "roster": str(tmp_path / "roster.csv"),
                    "source": {"kind": "ndjson", "path": str(tmp_path)},
                }
            ],
            "repository": {"kind": "file", "path": str(tmp_path / "repo")},
        },
        base_dir=tmp_path,
    )
    return SiteSetup.load(config, config.sites[0]), db.open_store(config.store.url)


def too_large(identifier: str) -> BadLine:
    ref = f"Observation/{identifier}"
    problem = ndjson.too_large_problem(52_428_800, 1 << 20)
    return BadLine("Observation", ref, problem, ref=ref, patient_ref="Patient/p1")


def test_a_resource_over_the_limit_becomes_an_issue_and_takes_back_its_facts(tmp_path: Path) -> None:
    setup, sessions = site_setup(tmp_path)
    good = SourceLine("Observation", observation("o1", value=1.1), "Observation/o1")
    sync_site(setup, sessions, source=ScriptedSource([good]))
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(models.FactRow)) == 1

    # The site sends a new version of o1 that is 50 MB: the old version's fact goes, an issue names it.
    summary = sync_site(setup, sessions, source=ScriptedSource([too_large("o1")]))
    assert summary.invalid == 1
    with sessions() as session:
        issue = session.get(models.IssueRow, "capped|invalid_resource|Observation/o1")
        assert issue is not None and issue.status == "open" and issue.subject_id == "S-1"
        assert "52,428,800 bytes" in issue.detail and "max_resource_bytes" in issue.detail
        row = session.get(models.SourceResource, ("capped", "Observation", "o1"))
        assert (
            row is not None
            and row.version == TOO_LARGE
            and orjson.loads(row.raw)
            == {
                "resourceType": "Observation",
                "id": "o1",
            }
        )
        assert session.scalar(sa.select(sa.func.count()).select_from(models.FactRow)) == 0
        everything = " ".join(str(v) for v in session.scalars(sa.select(models.SourceResource.raw)))
        assert CONTENT_MARKER not in everything

    # A first sight that is too large is stored the same way (no clash with the page's inserts).
    sync_site(setup, sessions, source=ScriptedSource([too_large("o2"), too_large("o2")]))

    # The site fixes it: the next version is mapped and the issue resolves by itself.
    fixed_resource = {**observation("o1", value=1.2), "meta": {"versionId": "3"}}
    fixed = SourceLine("Observation", fixed_resource, "Observation/o1")
    sync_site(setup, sessions, source=ScriptedSource([fixed]))
    with sessions() as session:
        issue = session.get(models.IssueRow, "capped|invalid_resource|Observation/o1")
        assert issue is not None and issue.status == "resolved"
        assert session.scalar(sa.select(sa.func.count()).select_from(models.FactRow)) == 1


@responses.activate
def test_a_rest_source_hands_the_cap_to_its_pages(tmp_path: Path) -> None:
    """The REST source reads pages with the site's caps (``connect.client_for`` builds the client)."""
    settings = fhir_settings.RestSource(kind="fhir-rest", base_url=BASE, max_resource_bytes=4096)
    source = rest.RestSearchSource(
        "capped",
        settings,
        roster=roster_mod.Roster([roster_mod.RosterEntry(MRN, "M1", "S-1", dt.date(2025, 1, 1))]),
        wanted=discovery.source_wanted(catalog_mod.load_catalog(paths.default_mappings_dir(), "capped")),
        prefetch=False,
    )
    assert source.client.max_resource_bytes == 4096 and source.client.max_body_bytes == 64 << 20
    responses.get(
        f"{BASE}/Observation", json=search_bundle([observation("small"), observation("big", text_bytes=9000)])
    )
    pages = list(source.pages("Observation", patient_refs=["Patient/p1"], since=None, resume=None))
    kinds = [type(line).__name__ for page in pages for line in page.lines]
    assert kinds == ["SourceLine", "BadLine"]
