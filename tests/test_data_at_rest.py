"""The state database keeps only what re-mapping needs: no names, MRNs or birth dates.

A copy of the demo site's export is dressed up the way real EHR resources
come: every Observation, MedicationAdministration and Procedure carries the
patient's name and MRN in ``subject.display`` and ``subject.identifier``, a
narrative repeating name, MRN and birth date, a note, a contained Patient,
an extension with the birth date, and performers, encounters and accession
identifiers.  After a sync (and a re-map from the stored copies) not one of
those strings may be anywhere in the database file, and the protocol records
must be exactly those of the plain export.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from adapter import paths, privacy
from adapter.config import PrivacyConfig
from adapter.demo import site as demo_site
from adapter.fhir import auth, smart_keys, stored_form
from adapter.net.settings import BearerAuth
from adapter.service import job
from adapter.sinks import transport
from adapter.sinks.settings import HttpRepository
from adapter.store import db
from adapter.sync import SiteSetup, remap_site
from adapter.web import sessions as sessions_mod

from golden import repository_records
from support import phi_strings, write_test_secret

MAPPED = ("Observation", "MedicationAdministration", "Procedure")


def dressed(resource: dict[str, Any], patient: dict[str, Any]) -> dict[str, Any]:
    """``resource`` carrying ``patient``'s identity in every place a real EHR puts it."""
    name = patient["name"][0]
    full = name.get("text") or " ".join([*name.get("given", []), name.get("family", "")])
    mrn = patient["identifier"][0]
    born = patient.get("birthDate", "")
    subject = dict(resource["subject"])
    subject.update(display=full, identifier={"system": mrn["system"], "value": mrn["value"]})
    return {
        **resource,
        "subject": subject,
        "text": {"status": "generated", "div": f"<div>{full}, MRN {mrn['value']}, born {born}</div>"},
        "note": [{"authorString": full, "text": f"patient {full} ({mrn['value']}) tolerated it"}],
        "contained": [
            *resource.get("contained", []),
            {
                "resourceType": "Patient",
                "id": "pt",
                "name": patient["name"],
                "identifier": [mrn],
                "birthDate": born,
            },
        ],
        "extension": [{"url": "http://example.org/birth", "valueDate": born}],
        "performer": [{"actor": {"reference": "Practitioner/1", "display": f"nurse caring for {full}"}}],
        "encounter": {"reference": "Encounter/1", "display": f"admission of {full}"},
        "identifier": [{"system": "http://lab.example/accession", "value": f"{mrn['value']}-LAB-1"}],
    }


def dress_export(source: Path, target: Path) -> None:
    shutil.copytree(source, target)
    patients = {
        f"Patient/{p['id']}": p
        for p in (orjson.loads(line) for line in (target / "Patient.ndjson").read_bytes().splitlines())
    }
    for resource_type in MAPPED:
        path = target / f"{resource_type}.ndjson"
        lines = []
        for line in path.read_bytes().splitlines():
            resource = orjson.loads(line)
            patient = patients.get(resource.get("subject", {}).get("reference", ""))
            lines.append(orjson.dumps(dressed(resource, patient) if patient else resource))
        path.write_bytes(b"\n".join(lines) + b"\n")


def state_bytes(work: Path) -> bytes:
    with sqlite3.connect(work / "state.db") as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return b"".join(path.read_bytes() for path in work.glob("state.db*") if path.is_file())


def run(tmp_path: Path, name: str, data: Path) -> tuple[Path, dict[str, Any]]:
    work = tmp_path / name
    work.mkdir()
    write_test_secret(work / "site-secret.key")
    config = demo_site.demo_config(work, data_dir=data)
    job.run_once(config, config.sites)
    sessions = db.open_store(config.store.url)
    for site in config.sites:
        remap_site(SiteSetup.load(config, site), sessions, everything=True)  # from the stored copies
    job.run_once(config, config.sites)
    sessions.kw["bind"].dispose()
    return work, repository_records(config)


def test_no_identity_reaches_the_state_database(tmp_path: Path) -> None:
    plain, dressed_data = tmp_path / "plain", tmp_path / "dressed"
    shutil.copytree(paths.demo_data_dir(), plain)
    for site in ("demo-east", "demo-north"):
        dress_export(paths.demo_data_dir() / site, dressed_data / site)
    secrets = phi_strings(dressed_data)
    exported = b"".join(p.read_bytes() for p in dressed_data.glob("*/Observation.ndjson"))
    assert secrets and all(secret.encode() in exported for secret in secrets), "the export is dressed"

    _work, expected = run(tmp_path, "work-plain", plain)
    work, records = run(tmp_path, "work-dressed", dressed_data)
    assert records == expected  # nothing the protocol needs was dropped
    stored = state_bytes(work)
    leaked = sorted(secret for secret in secrets if secret.encode() in stored)
    assert leaked == []


def test_a_reference_keeps_only_its_reference_and_unmapped_types_are_untouched() -> None:
    raw = {
        "resourceType": "Procedure",
        "id": "p1",
        "status": "completed",
        "subject": {"reference": "Patient/1", "display": "Jane Doe", "identifier": {"value": "MRN1"}},
        "performedDateTime": "2025-01-01",
        "meta": {"versionId": "3", "lastUpdated": "2025-01-02T00:00:00Z", "tag": [{"code": "x"}]},
        "_status": {"extension": [{"url": "u", "valueString": "why"}]},
    }
    kept = stored_form.for_storage(raw)
    assert kept["subject"] == {"reference": "Patient/1"}
    assert kept["meta"] == {"versionId": "3", "lastUpdated": "2025-01-02T00:00:00Z"}
    assert kept["_status"] == raw["_status"] and kept["performedDateTime"] == "2025-01-01"
    patient = {"resourceType": "Patient", "id": "1", "name": [{"text": "Jane Doe"}]}
    assert stored_form.for_storage(patient) == patient


def test_a_new_state_database_and_its_folder_are_private_whatever_the_umask(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    old = os.umask(0o022)
    try:
        sessions = db.open_store(f"sqlite:///{folder / 'state.db'}")
        with sessions.begin() as session:
            session.execute(sa.text("SELECT 1"))
        sessions.kw["bind"].dispose()
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.glob("state.db*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def bearer(token_file: Path) -> BearerAuth:
    return BearerAuth(kind="bearer", token_file=token_file)


def repository(token_file: Path) -> HttpRepository:
    return HttpRepository(kind="http", url="https://trials.example.org/api", auth=bearer(token_file))


def _loaders(tmp_path: Path) -> list[tuple[str, Path, Callable[[Path], object]]]:
    key = tmp_path / "smart.pem"
    smart_keys.write_key_pair(key)
    return [
        ("site secret", tmp_path / "site.key", lambda p: privacy.load_secret(PrivacyConfig(hmac_key_file=p))),
        ("EHR token", tmp_path / "ehr.token", lambda p: auth.make_authorizer(bearer(p))),
        ("repository token", tmp_path / "repo.token", lambda p: transport.bearer_token(repository(p))),
        ("console secret", tmp_path / "console.key", sessions_mod.load_or_create_secret),
        ("SMART key", key, auth.load_signing_key),
    ]


def test_every_secret_file_that_others_can_read_is_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for what, path, load in _loaders(tmp_path):
        if not path.exists():
            path.write_text("a-long-enough-secret-value-0123456789abcdef\n")
        path.chmod(0o644)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            load(path)
        warnings = [r for r in caplog.records if "readable by group or others" in r.getMessage()]
        assert [getattr(r, "path", None) for r in warnings] == [str(path)], what
        assert "0123456789abcdef" not in caplog.text
        path.chmod(0o600)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            load(path)
        assert "readable by group or others" not in caplog.text, what
