"""The console in a real browser: Debian's chromium driven by Playwright.

The app runs under uvicorn on 127.0.0.1 in a thread, over a private copy of
the synced demo.  Chromium comes from Debian (``apt-get install chromium``,
done here if missing, as CI starts on a fresh machine); Playwright's own
browser download is never used.  Set ``TRIAL_ADAPTER_SCREENSHOTS=1`` to
refresh the pictures in ``docs/screenshots/`` that the README shows.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Page, expect

from adapter.web.app import create_app

from .conftest import PASSWORD, HeldRemap, sandbox_config
from debian import apt_install

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def ensure_chromium() -> str:
    """Debian's chromium, installed with apt-get if this machine lacks it (CI is fresh)."""
    output = apt_install("chromium", installed=Path(CHROMIUM).exists)
    if not Path(CHROMIUM).exists():
        pytest.fail(f"could not install Debian's chromium: {output}")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch options, pointed at Debian's chromium."""
    return {**browser_type_launch_args, "executable_path": ensure_chromium(), "args": CHROMIUM_ARGS}


@pytest.fixture(scope="module")
def live_console(console_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The console served by uvicorn on a free loopback port, over its own sandbox."""
    root = tmp_path_factory.mktemp("browser") / "sandbox"
    shutil.copytree(console_template, root)
    app = create_app(sandbox_config(root))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the console did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("TRIAL_ADAPTER_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return DOCS_SCREENSHOTS
    return tmp_path


def log_in(page: Page, base: str, username: str) -> None:
    page.set_viewport_size({"width": 1360, "height": 900})
    page.set_default_timeout(20_000)
    page.goto(base + "/")
    expect(page).to_have_url(base + "/login?next=%2F")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()


def test_a_data_manager_filters_maps_ignores_and_reads_a_timeline(
    page: Page, live_console: str, shots: Path, held: HeldRemap
) -> None:
    base = live_console
    log_in(page, base, "dana")
    page.screenshot(path=shots / "worklist.png", full_page=True)

    page.get_by_label("Kind", exact=True).select_option("unknown_code")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(
        base + "/?site=&subject=&kind=unknown_code&concept=&min_age_days=0&status=open&text="
    )
    rows = page.locator("table.worklist tbody tr")
    expect(rows).to_have_count(2)

    creatinine_row = rows.filter(has_text="0045")
    expect(creatinine_row.locator(".suggested")).to_have_text("suggested: creatinine (100 %)")
    creatinine_row.locator("td.why a").click()
    expect(page.get_by_role("heading", name="Fix")).to_be_visible()
    suggestion = page.get_by_test_id("suggestion")
    expect(suggestion).to_have_count(1)
    expect(suggestion).to_contain_text("name '肌酐' is a known name of creatinine")
    expect(suggestion.locator("meter")).to_have_attribute("value", "1.0")
    page.screenshot(path=shots / "issue.png", full_page=True)
    page.get_by_role("button", name="Accept: map to creatinine").click()
    # The fix answers at once with its job's page (the re-map is held half way here), which
    # reloads itself, without a script, until the re-map is done.
    expect(page).to_have_url(re.compile(re.escape(base) + r"/jobs/[0-9a-f]{16}$"))
    expect(page.get_by_test_id("job-state")).to_have_text("running")
    expect(page.get_by_role("progressbar")).to_be_visible()
    held.release.set()
    # The rest of the re-map and the page's next self-refresh (every 2 s): on a loaded CI worker
    # that takes longer than the 5-s default wait, so the wait for the job is a minute.
    expect(page.get_by_test_id("job-state")).to_have_text("done", timeout=60_000)
    expect(page.get_by_role("heading", name="Result")).to_be_visible()
    expect(page.get_by_test_id("issues-resolved")).to_have_text("1")
    assert int(page.get_by_test_id("records-changed").inner_text()) >= 1
    expect(page.locator("section.result")).to_contain_text("EligibilityAssessment")
    page.screenshot(path=shots / "fix-result.png", full_page=True)
    page.locator("section.result").get_by_role("link", name="NCT06507514-E-001").click()
    creatinine = page.get_by_role("row").filter(
        has=page.get_by_role("rowheader", name="creatinine", exact=True)
    )
    expect(
        creatinine.get_by_role("cell", name="met", exact=True)
    ).to_be_visible()  # the record the fix changed
    page.go_back()
    page.get_by_role("link", name=re.compile(r"^Audit entry #\d+$")).click()
    expect(page.get_by_role("heading", name=re.compile("mapping.code"))).to_be_visible()
    expect(page.locator("details pre")).to_contain_text('"suggested":true')
    expect(page.get_by_test_id("suggested")).to_contain_text("accepted a suggestion scored")
    expect(page.get_by_test_id("records-changed")).not_to_have_text("0")

    page.goto(base + "/?kind=unknown_code")
    expect(page.locator("table.worklist tbody tr")).to_have_count(1)
    expect(page.locator("table.worklist")).not_to_contain_text("0045")

    page.goto(base + "/?kind=implausible_value")
    page.locator("td.why a").first.click()
    page.get_by_role("button", name="Ignore issue").click()  # the reason is required: nothing is sent
    expect(page.get_by_role("heading", name="Fix")).to_be_visible()
    page.get_by_label("Reason (required)").last.fill("the lab corrected the result the next day")
    page.get_by_role("button", name="Ignore issue").click()
    expect(page.get_by_text("the lab corrected the result the next day").first).to_be_visible()
    page.goto(base + "/?kind=implausible_value")
    expect(page.get_by_text("No open issues match")).to_be_visible()
    page.goto(base + "/audit")
    expect(page.locator("table.audit-log")).to_contain_text("issue.ignore")
    expect(page.locator("table.audit-log")).to_contain_text("mapping.code")
    expect(page.locator("table.jobs")).to_contain_text("done")  # the mapping fix's job, finished
    page.screenshot(path=shots / "audit.png", full_page=True)

    page.goto(base + "/subjects/demo-east/NCT06507514-E-001")
    timeline = page.locator("figure.timeline-figure svg")
    expect(timeline).to_be_visible()
    expect(timeline.locator("rect.cycle")).to_have_count(5)
    expect(timeline.locator("rect.cycle.pre_transplant")).to_have_count(1)
    assert timeline.locator("rect.cycle").first.bounding_box()["width"] > 10  # type: ignore[index]
    expect(page.get_by_role("heading", name="Eligibility at screening")).to_be_visible()
    page.screenshot(path=shots / "subject.png", full_page=True)
    page.goto(base + "/sites/demo-east")
    expect(page.get_by_role("heading", name="Mapping coverage")).to_be_visible()
    page.screenshot(path=shots / "site.png", full_page=True)

    # A dose not given and a result entered in error are the subject's history, not the worklist's.
    rows: list[str] = []
    for number in range(1, 5):
        page.goto(base + f"/subjects/demo-east/NCT06507514-E-00{number}")
        expect(page.get_by_role("heading", name=re.compile("^History"))).to_be_visible()
        rows += page.locator("table.not-counted tbody tr").all_inner_texts()
    assert any("mad-46d6c8700d46" in row and "not given" in row for row in rows), rows
    assert any("obs-96b6924cad1a" in row and "entered in error" in row for row in rows), rows
    page.goto(base + "/?status=all")
    worklist = page.locator("table.worklist").inner_text()
    assert "mad-46d6c8700d46" not in worklist and "obs-96b6924cad1a" not in worklist


def test_a_viewer_sees_no_forms_and_every_write_is_refused(page: Page, live_console: str) -> None:
    base = live_console
    log_in(page, base, "vic")
    page.locator("td.why a").first.click()
    expect(page.get_by_text("can look but not change anything")).to_be_visible()
    expect(page.locator("form.fix")).to_have_count(0)
    issue_url = page.url
    token = page.locator('input[name="csrf_token"]').first.input_value()
    for action in ("map-code", "accept", "map-unit", "ignore-code", "ignore"):
        answer = page.request.post(
            f"{issue_url}/{action}",
            form={"csrf_token": token, "concept": "wbc", "ucum": "mg/dL", "reason": "x"},
        )
        assert answer.status == 403, action
    page.goto(base + "/audit")
    assert page.request.post(base + "/audit/1/undo", form={"csrf_token": token}).status == 403
    assert page.request.post(base + "/users/dana/disable", form={"csrf_token": token}).status == 403


def test_a_post_without_csrf_token_is_refused_in_the_browser(page: Page, live_console: str) -> None:
    base = live_console
    log_in(page, base, "ada")
    page.goto(base + "/?status=all")
    page.locator("td.why a").first.click()
    answer = page.request.post(page.url + "/ignore", form={"reason": "forged from another page"})
    assert answer.status == 403
    assert "CSRF" in answer.text()
