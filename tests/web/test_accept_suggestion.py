"""Suggested concepts on the issue page and the worklist, and accepting one as a fix job.

In the console's sandbox the east site's local creatinine code (``lis|0045``,
shown as 肌酐, in µmol/L) is unknown, so the issue suggests creatinine; the
local sodium code (``lis|0099``, 钠) suggests nothing.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapter import config as config_mod
from adapter.store import db, models

from .conftest import (
    CREATININE_CODE,
    CREATININE_ISSUE,
    audit_link,
    csrf_token,
    finished_job,
    fix_file,
    issue_link,
    issue_status,
    job_state,
    login,
    started_job,
    text_or_none,
)

ACCEPT_FORM = re.compile(r'<form method="post" action="(/issues/[0-9a-f]+/accept)"')


def audit_count(config: config_mod.Config) -> int:
    with db.open_store(config.store.url)() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(models.AuditEntry)) or 0)


def worklist_row(client: TestClient, fragment: str) -> str:
    page = client.get("/?kind=unknown_code").text
    return next(row for row in page.split("<tr>") if fragment in row)


def test_the_issue_page_shows_the_suggestion_its_evidence_and_an_accept_button(client: TestClient) -> None:
    login(client, "dana")
    page = client.get(issue_link(client, "lis|0045 (", "kind=unknown_code")).text
    assert "Suggested concept" in page
    assert "<strong>creatinine</strong> <code>creatinine</code>" in page
    assert '<meter min="0" max="1" value="1.0" aria-label="score">100 %</meter>' in page
    assert "name &#39;肌酐&#39; is a known name of creatinine" in page
    assert "converts to creatinine&#39;s canonical unit mg/dL" in page
    assert ACCEPT_FORM.search(page) and ">Accept: map to creatinine</button>" in page

    sodium = client.get(issue_link(client, "lis|0099 (", "kind=unknown_code")).text
    assert "No concept's name matches what the site calls this code" in sodium
    assert not ACCEPT_FORM.search(sodium)


def test_the_worklist_names_the_suggestion_for_unknown_codes_only(client: TestClient) -> None:
    login(client, "vic")
    assert "suggested: <b>creatinine</b>" in worklist_row(client, "lis|0045 (")
    assert "suggested:" not in worklist_row(client, "lis|0099 (")
    assert "suggested:" not in client.get("/?kind=implausible_value").text


def test_accepting_runs_the_map_code_fix_as_a_job_and_audits_the_suggestion(
    client: TestClient, console_config: config_mod.Config
) -> None:
    login(client, "dana")
    page = issue_link(client, "lis|0045 (", "kind=unknown_code")
    answer = client.post(
        page + "/accept",
        data={"concept": "creatinine", "csrf_token": csrf_token(client, page)},
        follow_redirects=False,
    )
    done = finished_job(client, started_job(answer))
    assert job_state(done) == "done", done
    assert f"Map {CREATININE_CODE} to creatinine (suggested)" in done
    assert 'data-testid="issues-resolved">1<' in done and "EligibilityAssessment" in done
    assert issue_status(console_config, CREATININE_ISSUE) == "resolved"
    assert f'"{CREATININE_CODE}" = "creatinine"' in (text_or_none(fix_file(console_config)) or "")

    entry_id = int(audit_link(done).rsplit("/", 1)[1])
    with db.open_store(console_config.store.url)() as session:
        entry = session.get(models.AuditEntry, entry_id)
        assert entry is not None
        assert entry.action == "mapping.code" and entry.actor == "dana"
        assert entry.detail["suggested"] is True and entry.detail["score"] == 1.0
        assert "name '肌酐' is a known name of creatinine" in entry.detail["evidence"]
        assert entry.detail["issue"] == CREATININE_ISSUE


def test_a_concept_that_is_not_suggested_is_refused_on_the_page(
    client: TestClient, console_config: config_mod.Config
) -> None:
    login(client, "dana")
    before = audit_count(console_config)
    page = issue_link(client, "lis|0045 (", "kind=unknown_code")
    answer = client.post(page + "/accept", data={"concept": "alt", "csrf_token": csrf_token(client, page)})
    assert answer.status_code == 409
    assert "&#39;alt&#39; is not among the suggestions" in answer.text
    sodium = issue_link(client, "lis|0099 (", "kind=unknown_code")
    answer = client.post(
        sodium + "/accept", data={"concept": "alt", "csrf_token": csrf_token(client, sodium)}
    )
    assert answer.status_code == 409 and "no concept is suggested" in answer.text
    assert audit_count(console_config) == before and text_or_none(fix_file(console_config)) is None


def test_a_viewer_sees_suggestions_without_a_button_and_cannot_accept(
    client: TestClient, console_config: config_mod.Config
) -> None:
    login(client, "vic")
    page = issue_link(client, "lis|0045 (", "kind=unknown_code")
    shown = client.get(page).text
    assert "<strong>creatinine</strong>" in shown and "is a known name of creatinine" in shown
    assert not ACCEPT_FORM.search(shown) and "Accept: map to" not in shown
    refused = client.post(
        page + "/accept", data={"concept": "creatinine", "csrf_token": csrf_token(client, page)}
    )
    assert refused.status_code == 403
    assert issue_status(console_config, CREATININE_ISSUE) == "open"


def test_accepting_needs_the_csrf_token(client: TestClient, console_config: config_mod.Config) -> None:
    login(client, "dana")
    page = issue_link(client, "lis|0045 (", "kind=unknown_code")
    refused = client.post(page + "/accept", data={"concept": "creatinine"}, follow_redirects=False)
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert issue_status(console_config, CREATININE_ISSUE) == "open"
    assert text_or_none(fix_file(console_config)) is None
