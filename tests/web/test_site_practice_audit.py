"""A site's changed practice (``adapter.sync.site_practice``) as the console's audit log shows it."""

from __future__ import annotations

import html
import warnings

from adapter import config as config_mod
from adapter.store import db
from adapter.sync import SiteSetup, site_practice
from adapter.web.app import create_app
from adapter.web.throttle import LoginThrottle

from .conftest import login

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def test_the_audit_log_shows_a_practice_change_with_its_before_and_after(
    console_config: config_mod.Config,
) -> None:
    site = console_config.site("demo-east").model_copy(update={"spo2_without_oxygen_record": "room_air"})
    with db.open_store(console_config.store.url).begin() as session:
        assert site_practice.note_practice_change(session, SiteSetup.load(console_config, site))
    client = TestClient(create_app(console_config, throttle=LoginThrottle(max_failures=5)))
    login(client, "ada")  # an admin, who may undo anyone's action that can be undone

    log = html.unescape(client.get("/audit?site=demo-east&action=site.practice").text)
    row = next(r for r in log.split("<tr>") if "site.practice" in r and "<td>" in r)
    assert "config" in row and "demo-east:spo2_without_oxygen_record" in row
    assert "unknown → room_air" in row
    entry_id = row.split('href="/audit/', 1)[1].split('"', 1)[0]

    page = client.get(f"/audit/{entry_id}")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert '<dt>Before</dt><dd class="code">unknown</dd>' in text
    assert '<dt>After</dt><dd class="code">room_air</dd>' in text
    assert "Undo this action" not in text  # a config change is undone in the config file, not here
