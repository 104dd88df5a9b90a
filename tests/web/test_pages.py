"""The read-only pages: worklist filters, subject timeline, site health, CSV exports."""

from __future__ import annotations

import csv
import io
import re

import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapter import config as config_mod
from adapter.store import db, models
from adapter.web import csv_export

from .conftest import issue_link, login

SUBJECT = "/subjects/demo-east/NCT06507514-E-001"


def test_worklist_filters_by_site_kind_concept_subject_age_and_text(client: TestClient) -> None:
    login(client, "vic")
    everything = client.get("/").text
    total = int(re.search(r"(\d+) open issues", everything).group(1))  # type: ignore[union-attr]
    east = client.get("/?site=demo-east").text
    assert "demo-north" not in east.split("<tbody>")[1]
    only_codes = client.get("/?kind=unknown_code").text
    assert (
        only_codes.count('<span class="badge kind">unknown code</span>') == 2
    )  # sodium, and creatinine removed
    assert "2 open issues" in only_codes
    assert "1 open issue" in client.get("/?concept=platelets&kind=implausible_value").text
    assert "NCT06507514-N-004" in client.get("/?subject=N-004").text.split("<tbody>")[1]
    assert "No open issues match" in client.get("/?min_age_days=30").text  # all issues are minutes old
    assert "0099" in client.get("/?text=0099").text.split("<tbody>")[1]
    assert (
        f"{total} all issues" in client.get("/?status=all").text or "all" in client.get("/?status=all").text
    )


def test_subject_page_draws_the_timeline_with_every_cycle(
    client: TestClient, console_config: config_mod.Config
) -> None:
    with db.open_store(console_config.store.url)() as session:
        cycles = session.scalar(
            sa.select(sa.func.count()).where(
                models.RecordRow.subject_id == "NCT06507514-E-001",
                models.RecordRow.record_type == "TreatmentCycle",
                models.RecordRow.retracted.is_(False),
            )
        )
    login(client, "vic")
    page = client.get(SUBJECT).text
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert svg.count('class="cycle ') == cycles == 5
    assert 'data-phase="pre_transplant"' in svg and 'data-phase="maintenance"' in svg
    for mark in (
        'class="day0"',
        'class="reconstitution"',
        'class="collection"',
        'class="mrd"',
        'class="count wbc"',
    ):
        assert mark in svg, mark
    assert "Day 0 · 2025-03-17" in svg
    assert "Eligibility at screening" in page and 'class="badge crit-met"' in page
    alone = client.get(SUBJECT + "/timeline.svg")
    assert alone.headers["content-type"].startswith("image/svg+xml")
    assert alone.text.startswith("<svg") and alone.text.count('class="cycle ') == cycles


def test_unknown_subjects_and_sites_are_404(client: TestClient) -> None:
    login(client, "vic")
    assert client.get("/subjects/demo-east/NOBODY").status_code == 404
    assert client.get("/subjects/elsewhere/X").status_code == 404
    assert client.get("/sites/elsewhere").status_code == 404
    assert client.get("/issues/0123456789abcdef01234567").status_code == 404


def test_site_page_shows_coverage_health_backlog_and_trend(client: TestClient) -> None:
    login(client, "vic")
    page = client.get("/sites/demo-east").text
    for text in (
        "Mapping coverage",
        "Sync health",
        "Observation",
        "0 waiting",
        "Open issues over time",
        "lis|0099",
        'class="badge run-ok"',
    ):
        assert text in page, text
    assert "<svg" in page
    overview = client.get("/sites").text
    assert "demo-east" in overview and "demo-north" in overview


def test_issue_and_eligibility_exports_are_csv_for_monitors(client: TestClient) -> None:
    login(client, "dana")
    issues = list(
        csv.DictReader(io.StringIO(client.get("/export/issues.csv?site=demo-east").text.lstrip("\ufeff")))
    )
    assert issues and {row["site"] for row in issues} == {"demo-east"}
    assert {"kind", "source_value", "source_unit", "source_time", "detail", "age_days"} <= set(issues[0])
    response = client.get("/export/eligibility.csv")
    assert response.headers["content-disposition"] == 'attachment; filename="eligibility.csv"'
    rows = list(csv.DictReader(io.StringIO(response.text.lstrip("\ufeff"))))
    assert {row["subject_id"] for row in rows} >= {"NCT06507514-E-001", "NCT06507514-N-001"}
    assert {row["status"] for row in rows} <= {"met", "not_met", "unknown"}
    assert any(row["evidence"].startswith("Observation/") for row in rows)


def test_csv_cells_cannot_become_formulas() -> None:
    assert csv_export.safe_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_export.safe_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_export.safe_cell("-48") == "-48"
    assert csv_export.safe_cell(None) == ""


def test_issues_scoped_to_a_subject_or_of_the_newer_kinds_render(
    client: TestClient, console_config: config_mod.Config
) -> None:
    """Not every issue is about a resource or a code: a roster subject no Patient matched is one."""
    from adapter.mapping.issues import IssueKind, MappingIssue
    from adapter.store import state

    issues = [
        MappingIssue(
            site="demo-east",
            kind=IssueKind.SUBJECT_NOT_FOUND,
            scope="subject:NCT06507514-E-001",
            subject_id="NCT06507514-E-001",
            detail="subject NCT06507514-E-001 is on the roster, but no Patient carries its identifier",
        ),
        MappingIssue(
            site="demo-east",
            kind=IssueKind.WRONG_RESOURCE_TYPE,
            scope="Observation/wrong-kind",
            concept="mobilization",
            detail="Observation/wrong-kind: its code means mobilization (a medication)",
        ),
    ]
    with db.open_store(console_config.store.url).begin() as session:
        for issue in issues:
            state.replace_issues(session, issue.site, issue.scope, [issue])
    login(client, "vic")
    for fragment in ("subject not found", "wrong resource type"):
        link = issue_link(client, fragment, "kind=" + fragment.replace(" ", "_"))
        page = client.get(link)
        assert page.status_code == 200, page.text[:500]
        assert "What usually resolves it" in page.text
