"""What a viewer sees, page by page and export by export (issue 14, findings 4 and 6).

After the demo sync plus a few hostile resources (an id with an underscore
that carries an MRN, a patient not on the roster whose id has underscores, a
unit spelling that a data manager then maps, a 300 KB display and a 900 KB
value), every GET route the app mounts is rendered as a viewer, with every
issue, subject, site, audit entry and fix job filled in, and so is every export.  No
source reference, site resource id, site patient id, name or MRN may appear
in any of them.  The routes come from the app itself, so a page added later
is audited without editing this test.

The same data as a data manager shows the references in clear (so the
audit is not vacuous), and no page grows with the size of the site's values.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from adapter import config as config_mod
from adapter import paths
from adapter.demo import site as demo_site
from adapter.service import job
from adapter.store import db, models
from adapter.web.app import create_app
from adapter.web.issue_tokens import IssueTokens
from adapter.web.sessions import load_or_create_secret
from adapter.web.throttle import LoginThrottle

from .conftest import api_routes, csrf_token, fix_and_wait, issue_link, job_state, login
from support import phi_strings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PATIENT = "Patient/pe-1483ff0672d1"  # NCT06507514-E-001 at demo-east
LOINC_CREATININE = {"system": "http://loinc.org", "code": "2160-0", "display": "Creatinine"}
WEIRD_OBSERVATION = "x12_ZY02413241"  # not a FHIR id (underscore), and it carries an MRN
STRANGER = "pt_X9_ZZ77"  # a patient not on the roster
STRANGER_MRN = "QQ99887766"
UNIT_SPELLING = "umol per litre"
LONG_DISPLAY = "肌" * 100_000  # 300 KB of UTF-8 in a code's display
LONG_VALUE = "v" * 900_000  # under max_resource_bytes, so it is stored and shown (shortened)
LOCAL_CODE = {"system": "http://hospital-east.example/fhir/lis", "code": "L-1"}


def observation(identifier: str, **fields: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "Observation",
        "id": identifier,
        "meta": {"versionId": "1"},
        "status": "final",
        "code": {"coding": [LOINC_CREATININE]},
        "subject": {"reference": PATIENT},
        "effectiveDateTime": "2025-01-21T09:00:00+08:00",
        "valueQuantity": {"value": 99, "unit": "umol/L", "system": "http://unitsofmeasure.org"},
        **fields,
    }
    return {key: value for key, value in resource.items() if value is not None}


def hostile_lines() -> dict[str, list[dict[str, Any]]]:
    return {
        "Observation": [
            observation(WEIRD_OBSERVATION),
            observation("obs-unit.77", valueQuantity={"value": 101, "unit": UNIT_SPELLING}),
            observation("obs-stranger-1", subject={"reference": f"Patient/{STRANGER}"}),
            observation("obs-long-display", code={"coding": [{**LOCAL_CODE, "display": LONG_DISPLAY}]}),
            {**observation("obs-long-value", valueQuantity=None), "valueString": LONG_VALUE},
        ],
        "Patient": [
            {
                "resourceType": "Patient",
                "id": STRANGER,
                "identifier": [{"system": "http://hospital-east.example/fhir/mrn", "value": STRANGER_MRN}],
                "name": [{"text": "Stranger Danger", "family": "Danger", "given": ["Stranger"]}],
                "birthDate": "1961-02-03",
            }
        ],
    }


@pytest.fixture
def hostile(sandbox: Path) -> tuple[config_mod.Config, Path]:
    """The synced console sandbox, synced again with hostile resources added to demo-east."""
    data = sandbox / "hostile-data"
    shutil.copytree(paths.demo_data_dir(), data)
    for resource_type, resources in hostile_lines().items():
        with (data / "demo-east" / f"{resource_type}.ndjson").open("ab") as handle:
            handle.writelines(orjson.dumps(r) + b"\n" for r in resources)
    config = demo_site.demo_config(sandbox / "work", data_dir=data)
    config = config.model_copy(
        update={"study": config.study.model_copy(update={"mappings": sandbox / "mappings"})}
    )
    job.run_once(config, config.sites)
    return config, data


@pytest.fixture
def hostile_client(hostile: tuple[config_mod.Config, Path]) -> TestClient:
    config, _data = hostile
    app = create_app(config, throttle=LoginThrottle(max_failures=50))
    client = TestClient(app)
    # A data manager's work, so the audit log names the hostile issues: a mapping fix that
    # resolves an issue on a resource, and two ignored issues whose keys hold odd ids.
    login(client, "dana")
    page = issue_link(client, UNIT_SPELLING)
    done = fix_and_wait(client, page, "map-unit", {"ucum": "umol/L"})
    assert job_state(done) == "done", done[:500]
    for fragment, reason in (
        (f"Patient/{STRANGER}", f"Patient/{STRANGER} is a test patient"),
        (WEIRD_OBSERVATION, f"Observation/{WEIRD_OBSERVATION} was entered in error"),
    ):
        page = issue_link(client, fragment)
        form = {"reason": reason, "csrf_token": csrf_token(client, page)}
        ignored = client.post(page + "/ignore", data=form)
        assert ignored.status_code == 200, ignored.text[:500]
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    return client


def forbidden_strings(config: config_mod.Config, data: Path) -> set[str]:
    """Every site resource id and patient id the state knows, and every name, MRN and birth date."""
    found = {WEIRD_OBSERVATION, STRANGER, STRANGER_MRN, "obs-unit.77", "obs-stranger-1"}
    with db.open_store(config.store.url)() as session:
        found |= set(session.scalars(sa.select(models.SourceResource.resource_id)))
        found |= {ref.partition("/")[2] for ref in session.scalars(sa.select(models.PatientLink.patient_ref))}
        found |= {
            source.partition("/")[2]
            for source in session.scalars(sa.select(models.IssueSource.source))
            if "/" in source and source[:1].isupper()
        }
    return {s for s in found if len(s) >= 8} | phi_strings(data)


def every_get(client: TestClient, config: config_mod.Config) -> dict[str, str]:
    """Every GET route of the app, each path parameter filled with every value the state has."""
    with db.open_store(config.store.url)() as session:
        keys = list(session.scalars(sa.select(models.IssueRow.key)))
        entries = [str(i) for i in session.scalars(sa.select(models.AuditEntry.id))]
        subjects = sorted(
            set(session.execute(sa.select(models.RecordRow.site, models.RecordRow.subject_id)))
            | set(
                session.execute(
                    sa.select(models.IssueRow.site, models.IssueRow.subject_id).where(
                        models.IssueRow.subject_id.is_not(None)
                    )
                )
            )
        )
    tokens = IssueTokens(load_or_create_secret(config.console.session_secret_file))
    values: dict[str, list[dict[str, str]]] = {
        "token": [{"token": tokens.token(key)} for key in keys],
        "entry_id": [{"entry_id": entry} for entry in entries],
        "site": [{"site": site.id} for site in config.sites],
        "site,subject_id": [{"site": site, "subject_id": subject} for site, subject in subjects],
        "username": [{"username": "dana"}],
        "job_id": [{"job_id": job.id} for job in client.app.state.console.jobs.recent(limit=100)],
    }
    queries = {"/": ["", "?status=all", "?status=ignored"], "/export/issues.csv": ["?status=all"]}
    pages: dict[str, str] = {}
    routes = [route for route in api_routes(client.app) if "GET" in route.methods]
    assert len(routes) >= 12, [r.path for r in routes]
    for route in routes:
        names = ",".join(re.findall(r"\{(\w+)\}", route.path))
        fillings = values[names] if names else [{}]
        assert fillings, f"nothing to fill {route.path} with"
        for filling in fillings:
            path = re.sub(r"\{(\w+)\}", lambda m: filling[m.group(1)], route.path)
            for query in queries.get(route.path, [""]):
                response = client.get(path + query, follow_redirects=False)
                assert response.status_code < 500, path
                pages[path + query] = response.text
    return pages


def test_a_viewer_sees_no_source_reference_or_site_id_on_any_page_or_export(
    hostile_client: TestClient, hostile: tuple[config_mod.Config, Path]
) -> None:
    config, data = hostile
    forbidden = forbidden_strings(config, data)
    assert {WEIRD_OBSERVATION, STRANGER, "ZY02413241"} <= forbidden
    login(hostile_client, "vic")
    pages = every_get(hostile_client, config)
    assert any(path.startswith("/audit/") for path in pages)
    assert any(path.startswith("/jobs/") for path in pages)  # the map-unit fix's job
    assert any(path.startswith("/issues/") for path in pages)
    assert "/export/audit.csv" in pages and "/export/eligibility.csv" in pages
    leaks = {path: sorted(s for s in forbidden if s in text) for path, text in pages.items()}
    assert not {path: found for path, found in leaks.items() if found}
    everything = "\n".join(pages.values())
    assert "src-" in pages["/export/audit.csv"]  # the issues it resolved, as keyed hashes
    assert re.search(r"demo-east\|patient_not_on_roster\|patient:src-[0-9a-f]{24}", everything)
    assert "Observation/" not in everything and "Patient/" not in everything


def test_a_data_manager_sees_the_same_references_in_clear(
    hostile_client: TestClient, hostile: tuple[config_mod.Config, Path]
) -> None:
    login(hostile_client, "dana")
    issue = hostile_client.get(issue_link(hostile_client, WEIRD_OBSERVATION, "status=all")).text
    assert f"Observation/{WEIRD_OBSERVATION}" in issue
    audit = hostile_client.get("/export/audit.csv").text
    assert "demo-east|unknown_unit|Observation/obs-unit.77" in audit
    assert f"patient:Patient/{STRANGER}" in audit


def test_no_page_grows_with_the_size_of_a_site_value(hostile_client: TestClient) -> None:
    """A 900 KB value and a 300 KB display are shown shortened, wherever they appear."""
    login(hostile_client, "dana")
    worklist = hostile_client.get("/?status=all")
    assert worklist.status_code == 200 and len(worklist.content) < 400_000
    assert LONG_VALUE[:1000] not in worklist.text and LONG_DISPLAY[:1000] not in worklist.text
    for fragment in ("value is text that is not a number", "L-1 ("):
        page = hostile_client.get(issue_link(hostile_client, fragment, "status=all"))
        assert page.status_code == 200 and len(page.content) < 100_000, fragment
        assert "…" in page.text
    exported = hostile_client.get("/export/issues.csv?status=all")
    assert len(exported.content) < 400_000 and LONG_VALUE[:5000] not in exported.text
    site = hostile_client.get("/sites/demo-east")
    assert len(site.content) < 100_000
