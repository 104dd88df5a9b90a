"""One-step fixes from the console: map, see records change, undo; ignore with a reason.

A mapping fix and its undo run as background jobs (``test_fix_jobs`` tests the jobs
themselves); here each is followed to its end, as the browser does.
"""

from __future__ import annotations

import re

import orjson
import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapter import config as config_mod
from adapter.mapping import overrides
from adapter.store import db, models

from .conftest import (
    CREATININE_ISSUE,
    audit_link,
    csrf_token,
    fix_and_wait,
    fix_file,
    issue_link,
    issue_status,
    job_state,
    login,
)


def eligibility_of(config: config_mod.Config, subject: str) -> dict[str, dict[str, object]]:
    with db.open_store(config.store.url)() as session:
        payload = session.scalar(
            sa.select(models.RecordRow.payload).where(
                models.RecordRow.subject_id == subject,
                models.RecordRow.record_type == "EligibilityAssessment",
            )
        )
    assert payload is not None
    return {c["criterion"]: c for c in orjson.loads(payload)["criteria"]}


def test_mapping_a_local_code_resolves_the_issue_updates_records_and_can_be_undone(
    client: TestClient, console_config: config_mod.Config
) -> None:
    shipped = console_config.study.mappings / "sites" / "demo-east.toml"
    shipped_text = shipped.read_text(encoding="utf-8")
    override = fix_file(console_config)
    assert not override.exists()
    assert eligibility_of(console_config, "NCT06507514-E-001")["creatinine"]["status"] == "unknown"
    login(client, "dana")
    page = issue_link(client, "lis|0045 (", "kind=unknown_code")
    assert 'action="' + page + '/map-code"' in client.get(page).text

    done = fix_and_wait(client, page, "map-code", {"concept": "creatinine"})
    assert job_state(done) == "done"
    assert re.search(r'data-testid="records-changed">[1-9]', done)
    assert 'data-testid="issues-resolved">1<' in done and "EligibilityAssessment" in done
    assert str(override) in done  # the result names the file it changed
    assert issue_status(console_config, CREATININE_ISSUE) == "resolved"
    assert eligibility_of(console_config, "NCT06507514-E-001")["creatinine"]["status"] == "met"
    written = override.read_text(encoding="utf-8")
    assert '"http://hospital-east.example/fhir/lis|0045" = "creatinine"  # by dana, ' in written
    assert shipped.read_text(encoding="utf-8") == shipped_text  # the mapping folder is never written
    assert "lis|0045 (" not in client.get("/").text  # gone from the open worklist
    entry = audit_link(done)
    assert 'data-testid="records-changed">' in client.get(entry).text  # the audit entry has the result too

    undone = fix_and_wait(client, entry, "undo")  # an undo re-maps too: a job like the fix
    assert job_state(undone) == "done" and "Undoes" in undone
    assert overrides.read_override(override)["codes"] == {}
    assert issue_status(console_config, CREATININE_ISSUE) == "open"
    assert eligibility_of(console_config, "NCT06507514-E-001")["creatinine"]["status"] == "unknown"
    again = client.post(entry + "/undo", data={"csrf_token": csrf_token(client, entry)})
    assert again.status_code == 409 and "already undone" in again.text


def test_a_refused_mapping_explains_itself_and_changes_nothing(
    client: TestClient, console_config: config_mod.Config
) -> None:
    override = fix_file(console_config)
    login(client, "dana")
    page = issue_link(client, "lis|0045 (", "kind=unknown_code")
    answer = client.post(
        page + "/map-code", data={"concept": "no_such_concept", "csrf_token": csrf_token(client, page)}
    )
    assert answer.status_code == 409 and "unknown concept" in answer.text
    assert not override.exists()


def test_ignore_needs_a_reason_is_audited_and_undone_only_by_its_author_or_an_admin(
    client: TestClient, console_config: config_mod.Config
) -> None:
    login(client, "dana")
    page = issue_link(client, "plausible range")
    blank = client.post(page + "/ignore", data={"reason": "   ", "csrf_token": csrf_token(client, page)})
    assert blank.status_code == 409 and "reason is required" in blank.text
    done = client.post(
        page + "/ignore",
        data={
            "reason": "lab confirmed a typo, corrected result follows",
            "csrf_token": csrf_token(client, page),
        },
    )
    entry = str(done.url)
    assert "lab confirmed a typo" in done.text and "issue.ignore" in done.text
    audit = client.get("/audit").text
    assert "dana" in audit and "lab confirmed a typo" in audit
    csv = client.get("/export/audit.csv").text
    assert "issue.ignore" in csv and "lab confirmed a typo" in csv

    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    login(client, "otto")
    assert client.post(entry + "/undo", data={"csrf_token": csrf_token(client, entry)}).status_code == 403
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    login(client, "ada")
    undone = client.post(entry + "/undo", data={"csrf_token": csrf_token(client, entry)})
    assert undone.status_code == 200 and "open again" not in undone.text  # the entry page, not the summary
    assert "plausible range" in client.get("/").text
