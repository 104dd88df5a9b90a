"""The subject page's history: doses not given, results entered in error; never on the worklist."""

from __future__ import annotations

from fastapi.testclient import TestClient

from adapter import config as config_mod
from adapter import privacy

from .conftest import login

NOT_GIVEN = "MedicationAdministration/mad-f7b983d8a3a6"  # demo-north, N-001: a bag charted as not done
WITHDRAWN = "Observation/obs-3cee1a7bb7e7"  # demo-north, N-004: a creatinine entered in error


def _section(page: str, heading_id: str) -> str:
    start = page.index(f'id="{heading_id}"')
    return page[start : page.index("</section>", start)]


def test_the_subject_page_lists_what_did_not_happen_for_data_managers(client: TestClient) -> None:
    login(client, "dana")
    given_not = client.get("/subjects/demo-north/NCT06507514-N-001").text
    history = _section(given_not, "history-heading")
    assert NOT_GIVEN in history and "blinatumomab" in history and "not given" in history
    cycles = _section(given_not, "cycles-heading")
    pre_transplant = next(row for row in cycles.split("<tr>") if "pre transplant 1" in row)
    assert NOT_GIVEN in pre_transplant and "2025-02-26" in pre_transplant  # the bag's day, inside the cycle

    withdrawn = _section(client.get("/subjects/demo-north/NCT06507514-N-004").text, "history-heading")
    assert WITHDRAWN in withdrawn and "creatinine" in withdrawn
    assert "entered in error by the site" in withdrawn


def test_a_viewer_sees_the_history_with_masked_references(
    client: TestClient, console_config: config_mod.Config
) -> None:
    login(client, "vic")
    secret = privacy.load_secret(console_config.privacy)
    page = client.get("/subjects/demo-north/NCT06507514-N-004").text
    history = _section(page, "history-heading")
    assert "entered in error by the site" in history
    assert WITHDRAWN not in page and privacy.hash_ref(secret, "demo-north", WITHDRAWN) in history
    page = client.get("/subjects/demo-north/NCT06507514-N-001").text
    assert NOT_GIVEN not in page and privacy.hash_ref(secret, "demo-north", NOT_GIVEN) in page


def test_neither_is_on_the_worklist(client: TestClient) -> None:
    login(client, "dana")
    for query in ("", "?status=all", "?site=demo-north&kind=not_final&status=all"):
        page = client.get(f"/{query}").text
        assert NOT_GIVEN not in page and WITHDRAWN not in page, query
    preliminary = client.get("/?site=demo-north&kind=not_final").text
    assert "1 open issue" in preliminary  # the preliminary MRD result: it may still change
