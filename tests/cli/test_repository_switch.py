"""Switching the trial repository, through the real CLI (issue 13, item 3).

After ``[repository]`` changes, ``sync``, ``push`` and ``check`` say that the
new repository lacks the current records and name ``push --resend``; the
resend queues each current record once (nothing retracted, nothing it
already holds or is about to get), and a second resend queues nothing.
The file-to-FHIR switch runs against a real FHIR server with bearer auth
on 127.0.0.1 (sekmet-fhir, tests/fhirserver.py), including a wrong token.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import alembic.command
import pytest
import requests
import sqlalchemy as sa
from alembic.config import Config as AlembicConfig
from click.testing import Result
from typer.testing import CliRunner

from adapter import config as config_mod
from adapter import errors, paths
from adapter.cli import main
from adapter.service import job
from adapter.sinks import identity
from adapter.store import db, models, schema

from fhirserver import FhirServerFactory, fhir_server_factory  # noqa: F401
from support import write_test_secret

runner = CliRunner()
RECORD_ID = "urn:trial-adapter:record-id"
FHIR_TYPES = ("Observation", "Procedure", "MedicationAdministration")


def file_repository(folder: str) -> str:
    return f'[repository]\nkind = "file"\npath = "{folder}"\n'


def write_config(tmp_path: Path, repository: str, *, data: Path | None = None, extra: str = "") -> Path:
    """A config for the demo-east site (``data``: a copy of its folder to edit)."""
    data = data or paths.demo_data_dir() / "demo-east"
    if not (tmp_path / "site.key").exists():
        write_test_secret(tmp_path / "site.key")
    path = tmp_path / "trial-adapter.toml"
    path.write_text(
        f'[store]\nurl = "sqlite:///state.db"\n[privacy]\nhmac_key_file = "site.key"\n'
        f'[[sites]]\nid = "demo-east"\ntimezone = "Asia/Shanghai"\n'
        f'roster = "{paths.demo_data_dir() / "demo-east" / "roster.csv"}"\n'
        f'[sites.source]\nkind = "ndjson"\npath = "{data}"\n' + extra + repository
    )
    return path


def cli(*args: str) -> Result:
    return runner.invoke(main.app, list(args))


def words(result: Result) -> str:
    return " ".join(result.output.split())


def folder_records(folder: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in folder.glob("*.ndjson"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                assert record["record_id"] not in found, "a record twice in the repository"
                found[record["record_id"]] = record
    return found


def current_records(config: Path) -> dict[str, str]:
    """record id -> record type of every current record in the state."""
    loaded = config_mod.load_config(config)
    with db.open_store(loaded.store.url)() as session:
        rows = session.execute(
            sa.select(models.RecordRow.record_id, models.RecordRow.record_type).where(
                models.RecordRow.retracted.is_(False)
            )
        )
        return {key: count for key, count in rows}


def outbox_counts(config: Path) -> dict[str, int]:
    result = cli("outbox", "-c", str(config), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    return {"pending": report["pending"], "delivered": report["delivered"], "failing": report["failing"]}


def delivered_to(config: Path) -> dict[str | None, int]:
    loaded = config_mod.load_config(config)
    with db.open_store(loaded.store.url)() as session:
        rows = session.execute(
            sa.select(models.OutboxItem.delivered_to, sa.func.count())
            .where(models.OutboxItem.delivered_at.is_not(None))
            .group_by(models.OutboxItem.delivered_to)
        )
        return {key: count for key, count in rows}


def test_file_to_another_folder_resend_delivers_every_current_record_once(tmp_path: Path) -> None:
    config = write_config(tmp_path, file_repository("old"))
    first = cli("sync", "-c", str(config), "-q")
    assert first.exit_code == 0, first.output
    assert "push --resend" not in first.output
    current = current_records(config)
    old = folder_records(tmp_path / "old")
    assert set(old) == set(current) and current

    write_config(tmp_path, file_repository("new"))
    synced = cli("sync", "-c", str(config), "-q", "--full")
    assert synced.exit_code == 0, synced.output
    assert "the trial repository changed" in words(synced)
    assert f"trial-adapter push --resend -c {config}" in words(synced)
    assert not (tmp_path / "new").exists(), "a full sync alone sends nothing"

    checked = cli("check", "-c", str(config))
    assert checked.exit_code == 0, checked.output
    assert f"{len(current)} current record(s)" in words(checked) and "push --resend" in words(checked)
    assert f"went to file repository {tmp_path / 'old'}" in words(checked)

    dry = cli("push", "-c", str(config), "--resend", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["resend"]["would_queue"] == len(current)
    assert outbox_counts(config)["pending"] == 0, "a dry run queues nothing"

    before = outbox_counts(config)["delivered"]
    resent = cli("push", "-c", str(config), "--resend")
    assert resent.exit_code == 0, resent.output
    assert f"queued {len(current)} current record(s)" in words(resent)
    assert folder_records(tmp_path / "new") == old, "the new repository holds exactly the current records"
    assert outbox_counts(config)["delivered"] == before + len(current)

    again = cli("push", "-c", str(config), "--resend")
    assert again.exit_code == 0, again.output
    assert "nothing to queue" in words(again) and "Delivered 0 change(s)" in words(again)
    assert outbox_counts(config)["delivered"] == before + len(current)

    for command in (("check",), ("sync", "-q"), ("push",)):
        quiet = cli(*command, "-c", str(config))
        assert quiet.exit_code == 0, quiet.output
        assert "push --resend" not in quiet.output, command

    new = identity.of(config_mod.load_config(config).repository).fingerprint
    assert delivered_to(config)[new] == len(current)

    # Back to the first folder: it still holds every record as it is now, so nothing is owed.
    write_config(tmp_path, file_repository("old"))
    back = cli("push", "-c", str(config), "--resend")
    assert back.exit_code == 0 and "nothing to queue" in words(back), back.output


def test_items_pending_at_the_switch_go_to_the_new_repository(tmp_path: Path) -> None:
    config = write_config(tmp_path, file_repository("old"))
    loaded = config_mod.load_config(config)
    job.run_once(loaded, loaded.sites, deliver=False)  # synced; nothing delivered yet
    write_config(tmp_path, file_repository("new"))
    pushed = cli("push", "-c", str(config))
    assert pushed.exit_code == 0, pushed.output
    assert "push --resend" not in pushed.output, "nothing went anywhere else"
    assert set(folder_records(tmp_path / "new")) == set(current_records(config))
    assert not (tmp_path / "old").exists()
    again = cli("push", "-c", str(config), "--resend")
    assert "nothing to queue" in words(again), again.output


def test_resend_by_site_and_type_and_its_flags(tmp_path: Path) -> None:
    config = write_config(tmp_path, file_repository("old"))
    assert cli("sync", "-c", str(config), "-q").exit_code == 0
    write_config(tmp_path, file_repository("new"))
    current = current_records(config)
    transplants = sum(1 for kind in current.values() if kind == "Transplant")

    some = cli("push", "-c", str(config), "--resend", "--site", "demo-east", "--type", "Transplant")
    assert some.exit_code == 0, some.output
    assert f"queued {transplants} current record(s)" in words(some)
    assert {r["record_type"] for r in folder_records(tmp_path / "new").values()} == {"Transplant"}
    rest = cli("push", "-c", str(config), "--resend")
    assert f"queued {len(current) - transplants} current record(s)" in words(rest), rest.output
    assert set(folder_records(tmp_path / "new")) == set(current)

    assert cli("push", "-c", str(config), "--resend", "--type", "Nope").exit_code == errors.EXIT_CONFIG
    assert cli("push", "-c", str(config), "--resend", "--site", "nope").exit_code == errors.EXIT_CONFIG
    assert cli("push", "-c", str(config), "--type", "Transplant").exit_code == errors.EXIT_USAGE


def test_a_retracted_record_is_not_resent(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(paths.demo_data_dir() / "demo-east", data)
    share = "[sync]\nmax_retraction_share = 0.5\n"  # one of the site's 12 procedures goes
    config = write_config(tmp_path, file_repository("old"), data=data, extra=share)
    assert cli("sync", "-c", str(config), "-q").exit_code == 0
    before = current_records(config)
    # A transplant procedure disappears from the export: its Transplant record is retracted.
    procedures = data / "Procedure.ndjson"
    lines = procedures.read_text(encoding="utf-8").splitlines()
    transplant = next(line for line in lines if '"41.04"' in line)
    procedures.write_text("\n".join(line for line in lines if line != transplant) + "\n")
    synced = cli("sync", "-c", str(config), "-q")
    assert synced.exit_code == 0, synced.output
    after = current_records(config)
    retracted = set(before) - set(after)
    assert "Transplant" in {before[r] for r in retracted}

    write_config(tmp_path, file_repository("new"), data=data, extra=share)
    resent = cli("push", "-c", str(config), "--resend")
    assert resent.exit_code == 0, resent.output
    assert set(folder_records(tmp_path / "new")) == set(after)
    assert not retracted & set(folder_records(tmp_path / "new"))
    assert folder_records(tmp_path / "new") == folder_records(tmp_path / "old")


def test_deliveries_from_before_the_upgrade_belong_to_the_repository_configured_then(tmp_path: Path) -> None:
    """A state at revision 0005 with delivered items: the first run attributes them to its repository."""
    config = write_config(tmp_path, file_repository("old"))
    url = config_mod.load_config(config).store.url
    engine = db.create_engine(url)
    alembic_config = AlembicConfig()
    alembic_config.set_main_option("script_location", str(schema.MIGRATIONS_DIR))
    with engine.begin() as connection:
        alembic_config.attributes["connection"] = connection
        alembic.command.upgrade(alembic_config, "0005")
        payload = (
            '{"record_id": "r-1", "record_type": "Transplant", "subject_id": "S-1", "day0": "2025-01-01"}'
        )
        connection.execute(
            sa.text(
                "INSERT INTO records (record_id, site, subject_id, record_type, content_hash, payload, "
                "retracted, updated_at) VALUES ('r-1', 'demo-east', 'S-1', 'Transplant', 'h1', :payload, 0, "
                "'2025-01-01 00:00:00')"
            ),
            {"payload": payload},
        )
        connection.execute(
            sa.text(
                "INSERT INTO outbox (site, subject_id, record_id, record_type, operation, payload, "
                "content_hash, created_at, attempts, delivered_at) VALUES ('demo-east', 'S-1', 'r-1', "
                "'Transplant', 'upsert', :payload, 'h1', '2025-01-01 00:00:00', 1, '2025-01-01 00:00:01')"
            ),
            {"payload": payload},
        )
    engine.dispose()

    checked = cli("check", "-c", str(config))  # migrates to 0006, attributes nothing (it writes no state)
    assert "push --resend" not in checked.output, checked.output
    assert delivered_to(config) == {None: 1}

    upgraded = cli("db", "upgrade", "-c", str(config))
    assert upgraded.exit_code == 0, upgraded.output
    old = identity.of(config_mod.load_config(config).repository).fingerprint
    assert delivered_to(config) == {old: 1}

    write_config(tmp_path, file_repository("new"))
    pushed = cli("push", "-c", str(config))
    assert "1 current record(s)" in words(pushed) and "push --resend" in words(pushed), pushed.output
    resent = cli("push", "-c", str(config), "--resend")
    assert "queued 1 current record(s)" in words(resent), resent.output
    assert set(folder_records(tmp_path / "new")) == {"r-1"}


# ----------------------------------------------------------------- file -> a real FHIR server


TOKEN = "good-repository-token-0123"  # noqa: S105


def fhir_records(base_url: str) -> dict[str, list[dict[str, Any]]]:
    """record id -> the record resources the server holds with that identifier."""
    found: dict[str, list[dict[str, Any]]] = {}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for resource_type in FHIR_TYPES:
        url: str | None = f"{base_url}/{resource_type}"
        params: dict[str, str] | None = {"identifier": f"{RECORD_ID}|", "_count": "500"}
        while url:
            bundle = requests.get(url, params=params, headers=headers, timeout=30).json()
            for entry in bundle.get("entry", []):
                resource = entry["resource"]
                for ident in resource.get("identifier", []):
                    if ident.get("system") == RECORD_ID:
                        found.setdefault(ident["value"], []).append(resource)
            url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
            params = None
    return found


def fhir_repository(url: str, token_file: Path) -> str:
    return (
        f'[repository]\nkind = "fhir"\nurl = "{url}"\ntimeout_seconds = 30\n'
        f'[repository.auth]\nkind = "bearer"\ntoken_file = "{token_file}"\n'
    )


def test_file_to_fhir_with_a_wrong_token_first_then_the_right_one(
    tmp_path: Path,
    fhir_server_factory: FhirServerFactory,  # noqa: F811
) -> None:
    server = fhir_server_factory(server_auth={"types": ["bearer"], "tokens": [TOKEN]})
    config = write_config(tmp_path, file_repository("old"))
    assert cli("sync", "-c", str(config), "-q").exit_code == 0
    current = current_records(config)

    token = tmp_path / "repository.token"
    token.write_text("a-wrong-token-4567\n")
    token.chmod(0o600)
    write_config(tmp_path, fhir_repository(server.base_url, token))

    checked = cli("check", "-c", str(config))
    assert checked.exit_code == errors.EXIT_DELIVERY, checked.output
    assert "repository fhir" in checked.output and "HTTP 401" in words(checked)
    assert "push --resend" in words(checked)

    failed = cli("push", "-c", str(config), "--resend")
    assert failed.exit_code == errors.EXIT_DELIVERY, failed.output
    assert f"queued {len(current)} current record(s)" in words(failed)
    assert "delivery failed" in words(failed) and "HTTP 401" in words(failed)
    assert "next retry at" in words(failed)
    assert "a-wrong-token-4567" not in failed.output
    assert fhir_records(server.base_url) == {}

    synced = cli("sync", "-c", str(config), "-q")
    assert synced.exit_code == errors.EXIT_DELIVERY, synced.output
    assert "HTTP 401" in words(synced) and "next retry" in words(synced)
    assert "push --resend" not in synced.output, "the resend is queued: nothing more is missing"

    token.write_text(TOKEN + "\n")
    assert cli("check", "-c", str(config)).exit_code == 0
    fixed = cli("push", "-c", str(config), "--retry-now")
    assert fixed.exit_code == 0, fixed.output
    assert f"Delivered {len(current)} change(s)" in words(fixed)
    held = fhir_records(server.base_url)
    assert set(held) == set(current) and all(len(resources) == 1 for resources in held.values())
    assert all(r[0]["status"] != "entered-in-error" for r in held.values())
    versions = {record_id: r[0]["meta"]["versionId"] for record_id, r in held.items()}

    again = cli("push", "-c", str(config), "--resend")
    assert again.exit_code == 0 and "nothing to queue" in words(again), again.output
    assert {
        record_id: r[0]["meta"]["versionId"] for record_id, r in fhir_records(server.base_url).items()
    } == (versions), "a second resend writes nothing"


@pytest.mark.parametrize("kind", ["fhir"])
def test_a_token_change_is_not_a_new_repository(tmp_path: Path, kind: str) -> None:
    first = tmp_path / "one.token"
    second = tmp_path / "two.token"
    for path in (first, second):
        path.write_text(f"{path.stem}-token-value\n")
    url = "https://trials.example.org/fhir"
    a = config_mod.config_from_dict(
        {
            "sites": [
                {"id": "a", "timezone": "UTC", "roster": "r.csv", "source": {"kind": "ndjson", "path": "d"}}
            ],
            "repository": {"kind": kind, "url": url, "auth": {"kind": "bearer", "token_file": str(first)}},
        },
        base_dir=tmp_path,
    )
    b = config_mod.config_from_dict(
        {
            "sites": [
                {"id": "a", "timezone": "UTC", "roster": "r.csv", "source": {"kind": "ndjson", "path": "d"}}
            ],
            "repository": {
                "kind": kind,
                "url": url + "/",
                "auth": {"kind": "bearer", "token_file": str(second)},
            },
        },
        base_dir=tmp_path,
    )
    assert identity.of(a.repository).fingerprint == identity.of(b.repository).fingerprint
