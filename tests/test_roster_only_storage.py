"""Only roster patients' resources are kept: a non-enrolled patient's data never reaches the state (issue 15).

Whatever hands it over (an NDJSON folder, a Bulk export without a Group, a
REST server answering with patients nobody asked for), a resource whose
patient is not on the roster is stored by name and version only, so it can be
skipped when unchanged and retired when gone, and its
``patient_not_on_roster`` issue still asks a data manager to enrol or ignore.
When the patient joins the roster, the source is read again and the data is
mapped and delivered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import alembic.command
import orjson
import pytest
import responses
import sqlalchemy as sa
from alembic.config import Config as AlembicConfig

from adapter import config as config_mod
from adapter.fhir import bulk_source, http
from adapter.fhir import settings as fhir_settings
from adapter.fhir.source import BadLine, Page, SourceLine
from adapter.service import job
from adapter.store import db, models, schema
from adapter.sync import NOT_KEPT, SiteSetup, sync_site

from golden import issue_list, repository_records
from support import demo_sandbox, write_test_secret

MRN = "urn:test:mrn"
BASE = "https://ehr.example.org/fhir"
T1 = "2025-06-01T10:00:00.000Z"
# Values only the foreign patient's Observation carries: they must never be in the state file.
FOREIGN_TIME = "2025-03-02T11:22:33+08:00"
FOREIGN_VALUE = 7.654321


# ------------------------------------------------------------------ helpers


def sqlite_path(config: config_mod.Config) -> Path:
    url = config.store.url
    assert url.startswith("sqlite:///")
    return Path(url.removeprefix("sqlite:///"))


def state_bytes(database: Path) -> bytes:
    """The SQLite file and its write-ahead log: everything the state holds on disk."""
    return b"".join(p.read_bytes() for p in (database, Path(f"{database}-wal")) if p.exists())


def stub(resource_type: str, resource_id: str) -> str:
    return orjson.dumps(
        {"resourceType": resource_type, "id": resource_id}, option=orjson.OPT_SORT_KEYS
    ).decode()


def rows_of(config: config_mod.Config, site: str, patient_ref: str) -> list[models.SourceResource]:
    with db.open_store(config.store.url)() as session:
        return list(
            session.scalars(
                sa.select(models.SourceResource).where(
                    models.SourceResource.site == site, models.SourceResource.patient_ref == patient_ref
                )
            )
        )


def off_roster_patient(config: config_mod.Config, site: str) -> str:
    with db.open_store(config.store.url)() as session:
        ref: str = session.scalars(
            sa.select(models.PatientLink.patient_ref).where(
                models.PatientLink.site == site, models.PatientLink.subject_id.is_(None)
            )
        ).one()
    return ref


def leaves(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item, key)
    else:
        yield key, value


def telltales(folder: Path, patient_ref: str) -> set[str]:
    """Strings of the patient's resources (and Patient) that no other line of the site's files holds.

    Finding one in the state can only mean the patient's data was stored.
    """
    own: list[dict[str, Any]] = []
    others: list[str] = []
    for file in sorted(folder.glob("*.ndjson")):
        for line in file.read_text(encoding="utf-8").splitlines():
            resource = orjson.loads(line)
            mine = (resource.get("subject") or {}).get("reference") == patient_ref or (
                f"{resource['resourceType']}/{resource['id']}" == patient_ref
            )
            (own.append(resource) if mine else others.append(line))
    everything_else = "\n".join(others)
    found = set()
    for resource in own:
        for key, value in leaves(resource):
            if key in ("id", "reference", "versionId", "lastUpdated") or isinstance(value, bool):
                continue
            text = str(value)
            if len(text) >= 6 and text not in everything_else:
                found.add(text)
    return found


@pytest.fixture
def sandbox(tmp_path: Path) -> config_mod.Config:
    """The demo config with its own copy of the site folders (rosters may change)."""
    return demo_sandbox(tmp_path)


def enrol(config: config_mod.Config, site: str, patient_ref: str, subject_id: str) -> None:
    """Add the patient to the site's roster with its first identifier."""
    roster = config.site(site).roster
    patient_id = patient_ref.split("/")[1]
    patient = next(
        orjson.loads(line)
        for line in (roster.parent / "Patient.ndjson").read_text().splitlines()
        if orjson.loads(line)["id"] == patient_id
    )
    ident = patient["identifier"][0]
    roster.write_text(roster.read_text() + f"{ident['system']},{ident['value']},{subject_id},2025-03-20\n")


# ------------------------------------------------------------------ NDJSON (the demo)


def test_a_non_roster_patients_resources_are_kept_without_their_body(sandbox: config_mod.Config) -> None:
    job.run_once(sandbox, sandbox.sites)
    database = sqlite_path(sandbox)
    on_disk = state_bytes(database)
    keys = {i["key"]: i for i in issue_list(sandbox)}
    for site in ("demo-north", "demo-east"):
        patient = off_roster_patient(sandbox, site)
        rows = rows_of(sandbox, site, patient)
        assert rows, f"the demo's {patient} at {site} has resources"
        for row in rows:
            assert row.raw == stub(row.resource_type, row.resource_id)  # nothing but its name
            assert row.outcome == "issue" and row.version.startswith("v:")  # the bookkeeping stays
        issue = keys[f"{site}|patient_not_on_roster|patient:{patient}"]
        assert issue["status"] == "open"
        with db.open_store(sandbox.store.url)() as session:
            refs = {f"{r.resource_type}/{r.resource_id}" for r in rows}
            assert not session.scalar(
                sa.select(sa.func.count())
                .select_from(models.FactRow)
                .where(models.FactRow.source_ref.in_(refs))
            )
        values = telltales(sandbox.site(site).roster.parent, patient)
        assert len(values) >= 3, values  # e.g. the patient's result times, name and MRN
        assert not [v for v in values if v.encode() in on_disk]

    # A second pass finds them unchanged: skipped by version, not mapped again.
    again = job.run_once(sandbox, sandbox.sites)
    assert all(s.resources_mapped == 0 for s in again.syncs)


def test_a_patient_who_joins_the_roster_is_mapped_and_delivered(sandbox: config_mod.Config) -> None:
    job.run_once(sandbox, sandbox.sites)
    patient = off_roster_patient(sandbox, "demo-north")
    enrol(sandbox, "demo-north", patient, "NCT06507514-N-099")

    result = job.run_once(sandbox, sandbox.sites)
    north = next(s for s in result.syncs if s.site == "demo-north")
    rows = rows_of(sandbox, "demo-north", patient)
    assert north.resources_mapped >= len(rows)
    for row in rows:
        assert row.version != NOT_KEPT and row.raw != stub(row.resource_type, row.resource_id)
        assert row.outcome == "mapped"
    statuses = {i["key"]: i["status"] for i in issue_list(sandbox)}
    assert statuses[f"demo-north|patient_not_on_roster|patient:{patient}"] == "resolved"
    subjects = {r["subject_id"] for r in repository_records(sandbox)["EligibilityAssessment.ndjson"]}
    assert "NCT06507514-N-099" in subjects

    # And back off the roster: the bodies go again, what the patient fed is retracted.
    roster = sandbox.site("demo-north").roster
    roster.write_text("".join(roster.read_text().splitlines(keepends=True)[:-1]))
    job.run_once(sandbox, sandbox.sites)
    for row in rows_of(sandbox, "demo-north", patient):
        assert row.raw == stub(row.resource_type, row.resource_id)
    statuses = {i["key"]: i["status"] for i in issue_list(sandbox)}
    assert statuses[f"demo-north|patient_not_on_roster|patient:{patient}"] == "open"


def test_an_upgraded_state_loses_the_bodies_it_kept_before(sandbox: config_mod.Config) -> None:
    """Migration 0008: a state written before kept non-roster bodies; the upgrade strips them."""
    job.run_once(sandbox, sandbox.sites)
    patient = off_roster_patient(sandbox, "demo-north")
    body = '{"id":"x","resourceType":"Observation","status":"final","valueString":"kept-before-0008"}'
    engine = db.create_engine(sandbox.store.url)
    with engine.begin() as connection:
        connection.execute(
            sa.update(models.SourceResource)
            .where(models.SourceResource.patient_ref == patient)
            .values(raw=body)
        )
        roster_bodies = dict(
            connection.execute(
                sa.select(models.SourceResource.resource_id, models.SourceResource.raw).where(
                    models.SourceResource.patient_ref != patient
                )
            ).all()
        )
        alembic_config = AlembicConfig()
        alembic_config.set_main_option("script_location", str(schema.MIGRATIONS_DIR))
        alembic_config.attributes["connection"] = connection
        alembic.command.downgrade(alembic_config, "0007")
    schema.upgrade(engine)
    with engine.begin() as connection:
        after = connection.execute(
            sa.select(
                models.SourceResource.resource_type,
                models.SourceResource.resource_id,
                models.SourceResource.raw,
            ).where(models.SourceResource.patient_ref == patient)
        ).all()
        assert after and all(raw == stub(rtype, rid) for rtype, rid, raw in after)
        assert (
            dict(
                connection.execute(
                    sa.select(models.SourceResource.resource_id, models.SourceResource.raw).where(
                        models.SourceResource.patient_ref != patient
                    )
                ).all()
            )
            == roster_bodies
        )
    engine.dispose()


# ------------------------------------------------------------------ a server sending what nobody asked for


def observation(
    identifier: str, patient: str, *, time: str = "2025-03-01T10:00:00+08:00", value: float = 1.0
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": identifier,
        "meta": {"versionId": "1"},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": time,
        "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org"},
    }


def patient(identifier: str, mrn: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": identifier, "identifier": [{"system": MRN, "value": mrn}]}


def small_site(tmp_path: Path, roster: dict[str, str]) -> tuple[SiteSetup, Any]:
    """A one-site config (MRN → subject id); the source is handed to ``sync_site``."""
    lines = "".join(f"{MRN},{mrn},{subject},2025-02-10\n" for mrn, subject in roster.items())
    (tmp_path / "roster.csv").write_text(
        "identifier_system,identifier_value,subject_id,enrolment_date\n" + lines
    )
    write_test_secret(tmp_path / "key")
    config = config_mod.config_from_dict(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
            "privacy": {"hmac_key_file": str(tmp_path / "key")},
            "sites": [
                {
                    "id": "site",
                    "timezone": "Asia/Shanghai",
                    "roster": str(tmp_path / "roster.csv"),
                    "source": {"kind": "ndjson", "path": str(tmp_path)},
                }
            ],
            "repository": {"kind": "file", "path": str(tmp_path / "repo")},
        },
        base_dir=tmp_path,
    )
    return SiteSetup.load(config, config.sites[0]), db.open_store(config.store.url)


class IncrementalServer:
    """A REST-like source: sends every resource on a full read, nothing on an incremental one.

    ``patients`` are the Patients a search by the roster's identifiers finds;
    its searches answer with the foreign patient's result too (a server that
    drops the search parameters).
    """

    complete_listing = False

    def __init__(self, patients: list[dict[str, Any]], observations: list[dict[str, Any]]) -> None:
        self.found = patients
        self.observations = observations
        self.asked: list[tuple[str, dt.datetime | None]] = []

    def patients(self) -> Iterator[SourceLine | BadLine]:
        for p in self.found:
            yield SourceLine("Patient", p, f"Patient/{p['id']}")

    def pages(
        self,
        resource_type: str,
        *,
        patient_refs: Sequence[str],
        since: dt.datetime | None,
        resume: str | None,
    ) -> Iterator[Page]:
        self.asked.append((resource_type, since))
        lines: list[SourceLine | BadLine] = []
        if resource_type == "Observation" and since is None:
            lines = [SourceLine("Observation", o, f"Observation/{o['id']}") for o in self.observations]
        yield Page(lines=lines, watermark=dt.datetime(2025, 6, 1, tzinfo=dt.UTC))

    def expected_total(self) -> int | None:
        return None


def test_foreign_results_are_kept_without_body_and_read_again_when_the_patient_joins(tmp_path: Path) -> None:
    observations = [observation("o1", "p1"), observation("o2", "p2", time=FOREIGN_TIME, value=FOREIGN_VALUE)]
    setup, sessions = small_site(tmp_path, {"M1": "S-1"})
    sync_site(setup, sessions, source=IncrementalServer([patient("p1", "M1")], observations))
    with sessions() as session:
        foreign = session.get(models.SourceResource, ("site", "Observation", "o2"))
        assert foreign is not None and foreign.raw == stub("Observation", "o2")
        assert foreign.patient_ref == "Patient/p2" and foreign.version == "v:1"
        own = session.get(models.SourceResource, ("site", "Observation", "o1"))
        assert own is not None and "valueQuantity" in own.raw
        issue = session.get(models.IssueRow, "site|patient_not_on_roster|patient:Patient/p2")
        assert issue is not None and issue.status == "open" and FOREIGN_TIME not in issue.detail
    on_disk = state_bytes(tmp_path / "state.db")
    assert FOREIGN_TIME.encode() not in on_disk and str(FOREIGN_VALUE).encode() not in on_disk

    # Nothing changes: the next pass is incremental and does not ask from scratch.
    server = IncrementalServer([patient("p1", "M1")], observations)
    sync_site(setup, sessions, source=server)
    assert all(since is not None for _type, since in server.asked)

    # p2 is enrolled: its search now finds it, and the pass reads every type from scratch.
    setup, sessions = small_site(tmp_path, {"M1": "S-1", "M2": "S-2"})
    server = IncrementalServer([patient("p1", "M1"), patient("p2", "M2")], observations)
    summary = sync_site(setup, sessions, source=server)
    assert all(since is None for _type, since in server.asked)
    assert summary.resources_mapped == 1 and summary.unchanged == 1  # o2 mapped, o1 skipped as before
    with sessions() as session:
        foreign = session.get(models.SourceResource, ("site", "Observation", "o2"))
        assert foreign is not None and foreign.outcome == "mapped" and FOREIGN_TIME in foreign.raw
        facts = session.scalars(
            sa.select(models.FactRow.subject_id).where(models.FactRow.source_ref == "Observation/o2")
        )
        assert list(facts) == ["S-2"]
        assert (
            session.get(models.IssueRow, "site|patient_not_on_roster|patient:Patient/p2").status == "resolved"
        )

    # Once caught up, passes are incremental again.
    server = IncrementalServer([patient("p1", "M1"), patient("p2", "M2")], observations)
    sync_site(setup, sessions, source=server)
    assert all(since is not None for _type, since in server.asked)


# ------------------------------------------------------------------ Bulk without a Group


def export_lines(*resources: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in resources)


@responses.activate
def test_a_hospital_wide_bulk_export_stores_nothing_of_other_patients(tmp_path: Path) -> None:
    status, files = f"{BASE}/bulk-status/1", f"{BASE}/bulk-files/1"
    responses.get(f"{BASE}/Patient/$export", status=202, headers={"Content-Location": status})
    manifest = {
        "transactionTime": T1,
        "requiresAccessToken": True,
        "output": [{"type": t, "url": f"{files}/{t}.ndjson"} for t in ("Patient", "Observation")],
    }
    responses.get(status, json=manifest)
    responses.delete(status, status=202)
    responses.get(
        f"{files}/Patient.ndjson", body=export_lines(patient("p1", "M1"), patient("p9", "M9-stranger"))
    )
    responses.get(
        f"{files}/Observation.ndjson",
        body=export_lines(
            observation("o1", "p1"), observation("o9", "p9", time=FOREIGN_TIME, value=FOREIGN_VALUE)
        ),
    )
    setup, sessions = small_site(tmp_path, {"M1": "S-1"})
    settings = fhir_settings.BulkSource(kind="fhir-bulk", base_url=BASE, work_dir=tmp_path / "bulk")
    assert settings.group_id is None
    client = http.FhirClient("site", BASE, sleep=lambda _s: None)
    source = bulk_source.BulkExportSource("site", settings, client=client, sleep=lambda _s: None)
    summary = sync_site(setup, sessions, source=source)
    assert summary.facts_written == 1
    with sessions() as session:
        stored = {
            (r.resource_type, r.resource_id): r for r in session.scalars(sa.select(models.SourceResource))
        }
        assert set(stored) == {("Observation", "o1")}  # the stranger's result never reached the sync
        links = dict(
            session.execute(sa.select(models.PatientLink.patient_ref, models.PatientLink.subject_id)).all()
        )
        assert links == {"Patient/p1": "S-1", "Patient/p9": None}  # a reference, nothing of the Patient
    on_disk = state_bytes(tmp_path / "state.db")
    for telltale in (FOREIGN_TIME, str(FOREIGN_VALUE), "M9-stranger"):
        assert telltale.encode() not in on_disk
