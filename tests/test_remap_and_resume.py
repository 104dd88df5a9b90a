"""A mapping fix flows back; a roster change relinks; a crash before derive heals.

Each test runs the real pipeline on a copy of the demo data and of the
mapping folder, so fixes are written to a throwaway override file.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from adapter import config as config_mod
from adapter.reconciliation import coverage
from adapter.service import job
from adapter.store import db, models
from adapter.sync import SiteSetup, remap_site

from golden import issue_list, repository_records
from support import demo_sandbox

SODIUM = "demo-east|unknown_code|code:http://hospital-east.example/fhir/lis|0099"
CREATININE_LOCAL = '"http://hospital-east.example/fhir/lis|0045" = "creatinine"'


@pytest.fixture
def sandbox(tmp_path: Path) -> config_mod.Config:
    """A demo config with its own copies of the data and the mappings."""
    return demo_sandbox(tmp_path, own_mappings=True)


def east(config: config_mod.Config) -> SiteSetup:
    return SiteSetup.load(config, config.site("demo-east"))


def test_site_override_fix_remaps_and_resolves(sandbox: config_mod.Config) -> None:
    override = sandbox.study.mappings / "sites" / "demo-east.toml"
    override.write_text(override.read_text().replace(CREATININE_LOCAL, ""))
    job.run_once(sandbox, sandbox.sites)
    open_codes = {i["key"] for i in issue_list(sandbox) if i["status"] == "open"}
    assert "demo-east|unknown_code|code:http://hospital-east.example/fhir/lis|0045" in open_codes
    before = repository_records(sandbox)

    override.write_text(override.read_text().replace("[codes]\n", f"[codes]\n{CREATININE_LOCAL}\n"))
    sessions = db.open_store(sandbox.store.url)
    summary = remap_site(east(sandbox), sessions)
    assert summary.resources_mapped > 0 and summary.issues_resolved >= 1
    job.run_once(sandbox, sandbox.sites)  # delivers; the next sync finds nothing stale
    statuses = {i["key"]: i["status"] for i in issue_list(sandbox)}
    assert statuses["demo-east|unknown_code|code:http://hospital-east.example/fhir/lis|0045"] == "resolved"
    after = repository_records(sandbox)
    assert after != before  # eligibility now has its creatinine
    assert remap_site(east(sandbox), sessions).resources_mapped == 0  # nothing stale any more


def test_ignored_code_stops_raising_and_resolves(sandbox: config_mod.Config) -> None:
    job.run_once(sandbox, sandbox.sites)
    override = sandbox.study.mappings / "sites" / "demo-east.toml"
    override.write_text(
        override.read_text().replace(
            "[ignored_codes]\n", '[ignored_codes]\n"http://hospital-east.example/fhir/lis|0099" = "sodium"\n'
        )
    )
    remap_site(east(sandbox), db.open_store(sandbox.store.url))
    statuses = {i["key"]: i["status"] for i in issue_list(sandbox)}
    assert statuses[SODIUM] == "resolved"
    with db.open_store(sandbox.store.url)() as session:
        cover = coverage.site_coverage(session, "demo-east")
    assert cover.by_type["Observation"].ignored == 2
    assert all(
        code != "http://hospital-east.example/fhir/lis|0099" for code, _, _ in cover.top_unmapped_codes
    )


def test_patient_added_to_roster_is_relinked(sandbox: config_mod.Config) -> None:
    job.run_once(sandbox, sandbox.sites)
    roster = sandbox.site("demo-east").roster
    with db.open_store(sandbox.store.url)() as session:
        off_roster = session.scalars(
            sa.select(models.PatientLink.patient_ref).where(
                models.PatientLink.site == "demo-east", models.PatientLink.subject_id.is_(None)
            )
        ).one()
    patient = next(
        line
        for line in (roster.parent / "Patient.ndjson").read_text().splitlines()
        if f'"id":"{off_roster.split("/")[1]}"' in line.replace(" ", "")
    )
    ident = orjson.loads(patient)["identifier"][0]
    roster.write_text(
        roster.read_text() + f"{ident['system']},{ident['value']},NCT06507514-E-099,2025-06-01\n"
    )
    result = job.run_once(sandbox, sandbox.sites)
    assert any(s.resources_mapped > 0 for s in result.syncs)
    kinds = {i["key"]: i["status"] for i in issue_list(sandbox) if "patient_not_on_roster" in i["key"]}
    assert any(status == "resolved" for key, status in kinds.items() if key.startswith("demo-east"))
    subjects = {r["subject_id"] for r in repository_records(sandbox)["EligibilityAssessment.ndjson"]}
    assert "NCT06507514-E-099" in subjects


def test_crash_between_ingest_and_derive_heals(
    sandbox: config_mod.Config,
    demo_run: tuple[config_mod.Config, job.JobResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from adapter.sync import passes

    real = passes.derive_dirty

    def power_cut(*args: object, **kwargs: object) -> None:
        raise RuntimeError("power cut after every fact was committed")

    monkeypatch.setattr(passes, "derive_dirty", power_cut)
    with pytest.raises(RuntimeError):
        job.run_once(sandbox, sandbox.sites)
    monkeypatch.setattr(passes, "derive_dirty", real)
    job.run_once(sandbox, sandbox.sites)
    reference, _ = demo_run
    assert repository_records(sandbox) == repository_records(reference)


def test_a_fix_is_refused_while_the_site_is_syncing(sandbox: config_mod.Config) -> None:
    from adapter.reconciliation import actions, fixes
    from adapter.store import locks

    job.run_once(sandbox, sandbox.sites)
    sessions = db.open_store(sandbox.store.url)
    override = sandbox.study.mappings / "sites" / "demo-east.toml"
    before = override.read_text()
    held = locks.try_acquire(sessions, "demo-east")
    assert held is not None
    with held, pytest.raises(actions.FixRefused, match="being synced"):
        fixes.map_code(
            sandbox, sessions, "demo-east", "http://hospital-east.example/fhir/lis|0099", "wbc", actor="t"
        )
    assert override.read_text() == before


def test_a_roster_subject_no_patient_carries_is_an_issue_until_the_roster_is_fixed(
    sandbox: config_mod.Config,
) -> None:
    roster = sandbox.site("demo-north").roster
    original = roster.read_text()
    header, first, *rest = original.splitlines()
    system, value, subject, enrolled = first.split(",")
    roster.write_text("\n".join([header, f"{system},{value}X,{subject},{enrolled}", *rest]) + "\n")
    job.run_once(sandbox, sandbox.sites)
    key = f"demo-north|subject_not_found|subject:{subject}"
    (issue,) = [i for i in issue_list(sandbox) if i["key"] == key]
    assert issue["status"] == "open" and system in issue["detail"]
    assert value not in issue["detail"]  # the MRN is never quoted
    assert not [i for i in issue_list(sandbox) if "subject_not_found" in i["key"] and i["key"] != key]

    roster.write_text(original)  # the study team corrects the typo
    job.run_once(sandbox, sandbox.sites)
    assert {i["key"]: i["status"] for i in issue_list(sandbox)}[key] == "resolved"
