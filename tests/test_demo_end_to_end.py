"""The whole pipeline on the bundled demo: golden output, idempotency, privacy.

These run the real thing (NDJSON source, R4B parsing, catalog, derivations,
SQLite with migrations, file repository) with only the HMAC secret fixed.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from adapter import config as config_mod
from adapter import paths
from adapter.service import job
from adapter.store import db, models

from golden import golden_issues, golden_records, issue_list, repository_records
from support import crash_mid_sync_then_resume, demo_sandbox, phi_strings, prepare_demo_workdir


def test_repository_matches_golden_records(demo_run: tuple[config_mod.Config, job.JobResult]) -> None:
    config, _ = demo_run
    assert repository_records(config) == golden_records()


def test_issues_match_golden(demo_run: tuple[config_mod.Config, job.JobResult]) -> None:
    config, _ = demo_run
    expected = golden_issues()
    assert issue_list(config) == expected


def test_every_record_type_for_every_subject(demo_run: tuple[config_mod.Config, job.JobResult]) -> None:
    config, _ = demo_run
    records = repository_records(config)
    subjects = set()
    for site in config.sites:
        with site.roster.open() as handle:
            subjects |= {row["subject_id"] for row in csv.DictReader(handle)}
    for name in (
        "EligibilityAssessment",
        "TreatmentCycle",
        "StemCellCollection",
        "Transplant",
        "Reconstitution",
        "MrdResult",
    ):
        have = {r["subject_id"] for r in records[f"{name}.ndjson"]}
        assert have == subjects, name


def test_every_planted_mess_is_its_typed_issue(demo_run: tuple[config_mod.Config, job.JobResult]) -> None:
    config, _ = demo_run
    messes = orjson.loads((paths.demo_data_dir() / "messes.json").read_bytes())
    sessions = db.open_store(config.store.url)
    with sessions() as session:
        raised = {(row.site, row.kind, row.source) for row in _issue_sources(session)}
        keys = set(session.scalars(sa.select(models.IssueRow.key)))
        stored = list(session.scalars(sa.select(models.SourceResource)))
        patients = {(row.site, row.patient_ref, f"{row.resource_type}/{row.resource_id}") for row in stored}
        outcomes = {(row.site, f"{row.resource_type}/{row.resource_id}"): row.outcome for row in stored}
    for mess in messes:
        site, kind, resource = mess["site"], mess["kind"], mess["resource"]
        if kind == "duplicate":
            assert not any(r[2] == resource for r in raised), "a duplicate must be deduplicated silently"
        elif kind in ("not_given", "withdrawn"):  # the site's own record: no issue, its own outcome
            assert not any(r[2] == resource for r in raised), mess
            assert outcomes[(site, resource)] == kind.replace("_", "-"), mess
        elif kind == "unknown_code":
            assert f"{site}|{kind}|{resource}" in keys, mess
        elif resource.startswith("Patient/"):
            refs = {ref for s, p, ref in patients if s == site and p == resource}
            assert refs, mess
            assert all((site, kind, ref) in raised for ref in refs), mess
        else:
            assert (site, kind, resource) in raised, mess


def _issue_sources(session: sa.orm.Session) -> list[sa.Row[tuple[str, str, str]]]:
    return list(
        session.execute(
            sa.select(models.IssueRow.site, models.IssueRow.kind, models.IssueSource.source).join(
                models.IssueSource, models.IssueSource.issue_key == models.IssueRow.key
            )
        )
    )


def test_unknown_code_is_one_issue_per_code(demo_run: tuple[config_mod.Config, job.JobResult]) -> None:
    config, _ = demo_run
    keys = [i["key"] for i in issue_list(config) if i["kind"] == "unknown_code"]
    assert keys == ["demo-east|unknown_code|code:http://hospital-east.example/fhir/lis|0099"]


def test_second_run_changes_and_sends_nothing(fresh_demo: config_mod.Config) -> None:
    first = job.run_once(fresh_demo, fresh_demo.sites)
    before = repository_records(fresh_demo)
    second = job.run_once(fresh_demo, fresh_demo.sites)
    assert first.delivery is not None and first.delivery.delivered > 0
    assert second.delivery is not None and second.delivery.delivered == 0
    assert all(s.resources_mapped == 0 and s.upserts == 0 and s.retractions == 0 for s in second.syncs)
    assert repository_records(fresh_demo) == before


def test_crash_mid_sync_resumes_without_loss_or_duplicates(
    tmp_path: Path, demo_run: tuple[config_mod.Config, job.JobResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, _ = demo_run
    config = prepare_demo_workdir(tmp_path / "crash")
    crash_mid_sync_then_resume(config, monkeypatch)
    assert repository_records(config) == repository_records(reference)
    sessions = db.open_store(config.store.url)
    with sessions() as session:
        sent = session.scalar(sa.select(sa.func.count()).select_from(models.OutboxItem))
    assert sent == sum(len(v) for v in repository_records(reference).values())


def test_entered_in_error_transplant_retracts_what_it_fed(tmp_path: Path) -> None:
    config = demo_sandbox(tmp_path)
    data = tmp_path / "data"
    job.run_once(config, config.sites)
    before = repository_records(config)
    subject = before["Transplant.ndjson"][0]["subject_id"]
    site_id = before["Transplant.ndjson"][0]["site"]

    procedures = data / site_id / "Procedure.ndjson"
    lines = [orjson.loads(line) for line in procedures.read_bytes().splitlines()]
    roster = {r["subject_id"]: r for r in csv.DictReader((data / site_id / "roster.csv").open())}
    patient_id = _patient_for(data / site_id, roster[subject])
    for proc in lines:
        is_hsct = any(c.get("code") in ("709115004", "41.04") for c in proc["code"].get("coding", []))
        if proc["subject"]["reference"] == f"Patient/{patient_id}" and is_hsct:
            proc["status"] = "entered-in-error"
            proc["meta"]["versionId"] = str(int(proc["meta"].get("versionId", "1")) + 1)
    procedures.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in lines))

    result = job.run_once(config, config.sites)
    after = repository_records(config)
    assert subject not in {r["subject_id"] for r in after["Transplant.ndjson"]}
    assert subject not in {r["subject_id"] for r in after.get("Reconstitution.ndjson", [])}
    assert sum(s.retractions for s in result.syncs) >= 2
    others = lambda recs: [r for r in recs if r["subject_id"] != subject]  # noqa: E731
    for name in before:
        assert others(after.get(name, [])) == others(before[name]), name


def _patient_for(folder: Path, roster_row: dict[str, str]) -> str:
    for line in (folder / "Patient.ndjson").read_bytes().splitlines():
        patient = orjson.loads(line)
        for ident in patient.get("identifier", []):
            if (ident.get("system"), ident.get("value")) == (
                roster_row["identifier_system"],
                roster_row["identifier_value"],
            ):
                return str(patient["id"])
    raise AssertionError("patient not found")


def test_no_phi_in_outgoing_records_logs_or_issues(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    phi = phi_strings()
    assert len(phi) > 10
    config = prepare_demo_workdir(tmp_path / "phi")
    with caplog.at_level(logging.DEBUG, logger="adapter"):
        logging.getLogger("adapter").propagate = True
        job.run_once(config, config.sites)
    outgoing = b"".join(p.read_bytes() for p in config.repository.path.iterdir())
    issues = orjson.dumps(issue_list(config))
    logged = "\n".join(r.getMessage() + " " + str(r.__dict__) for r in caplog.records).encode()
    assert caplog.records, "the run should log its progress"
    for text in phi:
        needle = text.encode()
        assert needle not in outgoing, "PHI in the trial repository"
        assert needle not in issues, "PHI in an issue"
        assert needle not in logged, "PHI in the log"
