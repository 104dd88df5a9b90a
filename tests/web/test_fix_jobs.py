"""Console fixes run as background jobs: the POST answers at once, the job's page follows the fix.

The re-map is held at a known point (a ``threading.Event`` inside the real
``remap_site``'s progress), so a test can look at the job while it runs, make
a second fix of the same site, or make the re-map fail half way.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapter import config as config_mod
from adapter.mapping import overrides
from adapter.reconciliation import actions, override_fix
from adapter.store import db, locks, models
from adapter.sync import SiteSetup, remap_site
from adapter.web.app import create_app
from adapter.web.jobs import JobOrder, JobRunner
from adapter.web.throttle import LoginThrottle

from .conftest import (
    CREATININE_CODE,
    CREATININE_ISSUE,
    HOLD,
    HeldRemap,
    audit_link,
    csrf_token,
    finished_job,
    fix_file,
    issue_link,
    issue_status,
    job_state,
    login,
    started_job,
)


def start_map_code(client: TestClient, page: str, concept: str = "creatinine") -> str:
    answer = client.post(
        page + "/map-code",
        data={"concept": concept, "csrf_token": csrf_token(client, page)},
        follow_redirects=False,
    )
    return started_job(answer)


def counts(config: config_mod.Config) -> tuple[int, int]:
    """Audit entries and outbox items in the state."""
    with db.open_store(config.store.url)() as session:
        audit = session.scalar(sa.select(sa.func.count()).select_from(models.AuditEntry))
        outbox = session.scalar(sa.select(sa.func.count()).select_from(models.OutboxItem))
    return int(audit or 0), int(outbox or 0)


def test_a_fix_answers_at_once_and_its_page_follows_it_to_the_result(
    client: TestClient, console_config: config_mod.Config, held: HeldRemap
) -> None:
    login(client, "dana")
    page = issue_link(client, "lis|0045 (", "kind=unknown_code")
    job = start_map_code(client, page)  # 303 while the re-map is held: the request did not wait for it
    assert held.reached.wait(HOLD)

    running = client.get(job)
    assert job_state(running.text) == "running"
    progress = re.search(r"Re-mapping the site&#39;s stored resources: (\d+) of (\d+)", running.text)
    assert progress and 0 < int(progress[1]) <= int(progress[2]), "the re-map's progress is shown"
    assert '<meta http-equiv="refresh" content="2">' in running.text  # reloads itself, no script
    assert "<script" not in running.text and "script-src" not in running.headers["content-security-policy"]
    assert "A fix is running at demo-east" in client.get(page).text  # the issue's page says so
    assert job in client.get("/audit").text  # and the audit log lists it
    assert issue_status(console_config, CREATININE_ISSUE) == "open"

    held.release.set()
    done = finished_job(client, job)
    assert job_state(done) == "done" and "http-equiv" not in done
    assert 'data-testid="issues-resolved">1<' in done and "EligibilityAssessment" in done
    assert "<dt>Made by</dt><dd>dana</dd>" in done
    entry = client.get(audit_link(done)).text
    assert "mapping.code" in entry and CREATININE_CODE in entry
    assert issue_status(console_config, CREATININE_ISSUE) == "resolved"


def test_fixes_of_one_site_wait_their_turn_and_are_checked_again_when_it_comes(
    console_config: config_mod.Config, held: HeldRemap
) -> None:
    """Queued, not refused; a waiting fix that the one before it made wrong is refused when it starts."""
    app = create_app(console_config, throttle=LoginThrottle(max_failures=5), jobs=JobRunner(max_waiting=2))
    client, other = TestClient(app), TestClient(app)
    login(client, "dana")
    sodium = issue_link(client, "lis|0099 (", "kind=unknown_code")
    creatinine = issue_link(client, "lis|0045 (", "kind=unknown_code")
    form = {"reason": "not used by the protocol", "csrf_token": csrf_token(client, sodium)}
    first = started_job(client.post(sodium + "/ignore-code", data=form, follow_redirects=False))
    assert held.reached.wait(HOLD)  # the first fix re-maps; the next two wait behind it

    second = start_map_code(client, creatinine)
    assert start_map_code(client, creatinine) == second  # the same fix sent twice (a double click)
    form = {"reason": "not needed after all", "csrf_token": csrf_token(client, creatinine)}
    third = started_job(client.post(creatinine + "/ignore-code", data=form, follow_redirects=False))
    waiting = client.get(third).text
    assert job_state(waiting) == "queued" and "2 fixes at demo-east run first" in waiting

    login(other, "otto")
    form = {"concept": "creatinine", "csrf_token": csrf_token(other, creatinine)}
    full = other.post(creatinine + "/map-code", data=form, follow_redirects=False)
    assert full.status_code == 409 and "2 fixes already wait their turn at demo-east" in full.text

    held.release.set()
    assert job_state(finished_job(client, first)) == "done"
    assert job_state(finished_job(client, second)) == "done"
    refused = finished_job(client, third)  # 0045 was mapped by the fix before it
    assert job_state(refused) == "failed"
    assert "a mapped code cannot also be ignored" in refused and "Nothing was changed." in refused
    fixes_made = overrides.read_override(fix_file(console_config))
    assert fixes_made["codes"] == {CREATININE_CODE: "creatinine"}
    assert list(fixes_made["ignored_codes"]) == ["http://hospital-east.example/fhir/lis|0099"]


def test_a_fix_that_fails_during_the_re_map_says_so_without_site_data_and_leaves_no_trace(
    client: TestClient, console_config: config_mod.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash = RuntimeError("Observation/obs-east-0045-1 broke")  # an error text that quotes site data
    held = HeldRemap(monkeypatch, fail_with=crash)
    before = counts(console_config)
    login(client, "dana")
    page = issue_link(client, "lis|0045 (", "kind=unknown_code")
    failed = finished_job(client, start_map_code(client, page))

    assert job_state(failed) == "failed" and held.reached.is_set()
    assert "unexpected error (RuntimeError)" in failed and "put back as it was" in failed
    assert "obs-east" not in failed and "Traceback" not in failed and "broke" not in failed
    assert not fix_file(console_config).exists()  # as before the fix: the site had no fix file
    assert counts(console_config) == before  # no audit entry, nothing queued for the repository
    assert issue_status(console_config, CREATININE_ISSUE) == "open"
    lock = locks.try_acquire(db.open_store(console_config.store.url), "demo-east")
    assert lock is not None, "the failed fix left the site locked"
    lock.release()

    # What the failed re-map had reached is mapped back by the next pass: nothing changes.
    sessions = db.open_store(console_config.store.url)
    remap_site(SiteSetup.load(console_config, console_config.site("demo-east")), sessions)
    assert counts(console_config)[1] == before[1]
    assert issue_status(console_config, CREATININE_ISSUE) == "open"


def _patient_client(config: config_mod.Config, wait_seconds: float) -> TestClient:
    """A console whose fixes wait ``wait_seconds`` at most for a site's sync, looking often."""
    jobs = JobRunner(sync_wait_seconds=wait_seconds, sync_poll_seconds=0.05)
    return TestClient(create_app(config, throttle=LoginThrottle(max_failures=5), jobs=jobs))


def test_a_fix_while_the_site_syncs_waits_for_the_pass_then_runs(console_config: config_mod.Config) -> None:
    client = _patient_client(console_config, wait_seconds=60)
    login(client, "dana")
    page = issue_link(client, "lis|0045 (", "kind=unknown_code")
    sync = locks.try_acquire(db.open_store(console_config.store.url), "demo-east")
    assert sync is not None
    with sync:
        job = start_map_code(client, page)
        deadline = time.monotonic() + 30
        while "sync pass to finish" not in client.get(job).text:
            assert time.monotonic() < deadline, "the job never said it waits for the sync"
            time.sleep(0.05)
        assert not fix_file(console_config).exists(), "nothing is written while the sync runs"
    done = finished_job(client, job)
    assert job_state(done) == "done"
    assert issue_status(console_config, CREATININE_ISSUE) == "resolved"


def test_a_fix_that_waits_too_long_for_a_sync_fails_with_the_reason_and_changes_nothing(
    console_config: config_mod.Config,
) -> None:
    client = _patient_client(console_config, wait_seconds=0.3)
    login(client, "dana")
    page = issue_link(client, "lis|0045 (", "kind=unknown_code")
    sync = locks.try_acquire(db.open_store(console_config.store.url), "demo-east")
    assert sync is not None
    with sync:
        failed = finished_job(client, start_map_code(client, page))
    assert job_state(failed) == "failed" and "being synced right now" in failed
    assert not fix_file(console_config).exists()


def test_job_pages_are_for_logged_in_users_and_unknown_jobs_are_not_found(
    client: TestClient, held: HeldRemap
) -> None:
    login(client, "dana")
    job = start_map_code(client, issue_link(client, "lis|0045 (", "kind=unknown_code"))
    held.release.set()
    finished_job(client, job)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert client.get(job, follow_redirects=False).status_code == 303  # to the login form
    login(client, "vic")  # a viewer reads the audit log, so the job's page too
    assert job_state(client.get(job).text) == "done"
    assert client.get("/jobs/0123456789abcdef").status_code == 404
    assert client.get("/jobs/not-a-job").status_code == 422


def test_a_stopping_console_drops_waiting_fixes_and_finishes_the_running_one() -> None:
    runner = JobRunner()
    release, started = threading.Event(), threading.Semaphore(0)

    def slow(progress: override_fix.FixProgress) -> actions.FixResult:
        progress(override_fix.REMAPPING, 1, 2)
        started.release()
        assert release.wait(HOLD)
        return actions.FixResult(audit_id=7, action=actions.MAP_CODE, site="east", summary="done")

    def never(progress: override_fix.FixProgress) -> actions.FixResult:
        raise AssertionError("a dropped fix must not run")

    running = runner.submit(JobOrder("east", actions.MAP_CODE, "first", "dana"), slow)
    waiting = runner.submit(JobOrder("east", actions.MAP_UNIT, "second", "dana"), never)
    other_site = runner.submit(JobOrder("west", actions.MAP_UNIT, "elsewhere", "dana"), slow)
    assert started.acquire(timeout=HOLD) and started.acquire(timeout=HOLD)  # both sites at once
    shown = runner.get(waiting.id)
    assert shown is not None and shown.state == "queued" and shown.ahead == 1
    runner.close()
    release.set()
    deadline = time.monotonic() + HOLD
    for job_id in (running.id, other_site.id):
        while (job := runner.get(job_id)) is not None and job.active and time.monotonic() < deadline:
            time.sleep(0.02)
        assert job is not None and job.state == "done" and job.result is not None
    dropped = runner.get(waiting.id)
    assert dropped is not None and dropped.state == "failed" and dropped.aftermath == "Nothing was changed."
    with pytest.raises(Exception, match="stopping"):
        runner.submit(JobOrder("east", actions.MAP_CODE, "late", "dana"), never)
