"""Clinical events stay clinical through the sync: not given, not done, entered in error (issue 17).

Each test runs the real pipeline on a copy of the demo data, changes one
resource the way a site would (a new version with another status), and runs
the next pass: what the resource fed is taken back, nothing lands on the
worklist, and the subject's history shows what happened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter import config as config_mod
from adapter import privacy
from adapter.mapping.issues import IssueKind, MappingIssue
from adapter.mapping.not_counted import NotCounted
from adapter.reconciliation import coverage
from adapter.service import job
from adapter.store import db, models, state
from adapter.sync import SiteSetup
from adapter.web import subject_history

from golden import repository_records
from support import demo_sandbox

NORTH = "demo-north"


def _stored_ref(session: Session, subject_id: str, concept: str, status: str) -> str:
    """The source reference of the subject's first fact of ``concept`` with ``status``."""
    rows = session.scalars(
        sa.select(models.FactRow.payload)
        .where(models.FactRow.subject_id == subject_id, models.FactRow.concept == concept)
        .order_by(models.FactRow.id)
    )
    for payload in rows:
        fact = orjson.loads(payload)
        if fact["status"] == status:
            return str(fact["source_ref"])
    raise AssertionError(f"no {status} {concept} fact for {subject_id}")


def _restatus(data: Path, site: str, ref: str, status: str) -> None:
    """The site sends a new version of ``ref`` with another status."""
    resource_type, resource_id = ref.split("/")
    path = data / site / f"{resource_type}.ndjson"
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    for resource in lines:
        if resource["id"] == resource_id:
            resource["status"] = status
            resource["meta"]["versionId"] = str(int(resource["meta"]["versionId"]) + 1)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))


def _history(config: config_mod.Config, session: Session, subject_id: str) -> list[Any]:
    setup = SiteSetup.load(config, config.site(NORTH))
    timezone = ZoneInfo(config.site(NORTH).timezone)
    return subject_history.subject_history(session, NORTH, subject_id, setup.catalog, timezone)


def _raised_by(session: Session, ref: str) -> list[str]:
    return list(
        session.scalars(sa.select(models.IssueSource.issue_key).where(models.IssueSource.source == ref))
    )


def _records_citing(config: config_mod.Config, ref: str) -> list[dict[str, Any]]:
    evidence = privacy.hash_ref(privacy.load_secret(config.privacy), NORTH, ref)
    return [
        r for records in repository_records(config).values() for r in records if evidence in r["evidence"]
    ]


def test_a_result_and_a_transplant_the_site_takes_back(tmp_path: Path) -> None:
    """Final, then entered in error / not done: facts gone, records retracted, no issue, in the history."""
    config = demo_sandbox(tmp_path)
    job.run_once(config, config.sites)
    sessions = db.open_store(config.store.url)
    with sessions() as session:
        mrd = _stored_ref(session, "NCT06507514-N-002", "mrd_flow", "final")
        hsct = _stored_ref(session, "NCT06507514-N-003", "auto_hsct", "completed")
    assert [r["record_type"] for r in _records_citing(config, mrd)] == ["MrdResult"]
    assert "Transplant" in {r["record_type"] for r in _records_citing(config, hsct)}

    _restatus(tmp_path / "data", NORTH, mrd, "entered-in-error")
    _restatus(tmp_path / "data", NORTH, hsct, "not-done")
    result = job.run_once(config, config.sites)

    (north,) = [s for s in result.syncs if s.site == NORTH]
    assert north.retractions >= 2 and north.outcomes["withdrawn"] == 1 and north.outcomes["not-done"] == 1
    assert _records_citing(config, mrd) == [] and _records_citing(config, hsct) == []
    transplants = {r["subject_id"] for r in repository_records(config)["Transplant.ndjson"]}
    assert "NCT06507514-N-003" not in transplants
    with sessions() as session:
        for ref, outcome in ((mrd, "withdrawn"), (hsct, "not-done")):
            facts = session.scalars(sa.select(models.FactRow).where(models.FactRow.source_ref == ref)).all()
            row = session.get(models.SourceResource, (NORTH, *ref.split("/")))
            assert (
                facts == [] and _raised_by(session, ref) == [] and row is not None and row.outcome == outcome
            )
        withdrawn = [h for h in _history(config, session, "NCT06507514-N-002") if h.source_ref == mrd]
        not_done = [h for h in _history(config, session, "NCT06507514-N-003") if h.source_ref == hsct]
    assert [(h.concept, h.happened, h.what) for h in withdrawn] == [
        ("mrd_flow", NotCounted.WITHDRAWN, "entered in error by the site")
    ]
    assert [(h.concept, h.happened) for h in not_done] == [("auto_hsct", NotCounted.NOT_DONE)]
    assert withdrawn[0].day is not None and not_done[0].day is not None


def test_a_dose_not_given_is_kept_raises_nothing_and_changes_no_cycle(tmp_path: Path) -> None:
    config = demo_sandbox(tmp_path)
    path = tmp_path / "data" / NORTH / "MedicationAdministration.ndjson"
    lines = path.read_bytes().splitlines(keepends=True)
    not_done = [line for line in lines if orjson.loads(line)["status"] == "not-done"]
    assert len(not_done) == 1
    ref = f"MedicationAdministration/{orjson.loads(not_done[0])['id']}"
    path.write_bytes(b"".join(line for line in lines if line not in not_done))
    job.run_once(config, config.sites)
    cycles_without = repository_records(config)["TreatmentCycle.ndjson"]

    path.write_bytes(b"".join(lines))  # the site's export now has the bag charted as not done
    result = job.run_once(config, config.sites)

    (north,) = [s for s in result.syncs if s.site == NORTH]
    assert north.outcomes["not-given"] == 1 and north.subjects_derived == 1
    assert (north.upserts, north.retractions) == (0, 0), "a dose not given changes no record"
    assert repository_records(config)["TreatmentCycle.ndjson"] == cycles_without
    sessions = db.open_store(config.store.url)
    with sessions() as session:
        (payload,) = session.scalars(
            sa.select(models.FactRow.payload).where(models.FactRow.source_ref == ref)
        )
        subject_id = orjson.loads(payload)["subject_id"]
        assert orjson.loads(payload)["status"] == "not-done"
        assert _raised_by(session, ref) == []
        history = _history(config, session, subject_id)
        cycles = [
            orjson.loads(row.payload)
            for row in session.scalars(
                sa.select(models.RecordRow).where(
                    models.RecordRow.subject_id == subject_id,
                    models.RecordRow.record_type == "TreatmentCycle",
                )
            )
        ]
    (entry,) = [h for h in history if h.source_ref == ref]
    assert (entry.concept, entry.happened, entry.what) == ("blinatumomab", NotCounted.NOT_GIVEN, "not given")
    placed = subject_history.not_given_by_cycle(cycles, history)
    (cycle_id,) = placed
    (cycle,) = [c for c in cycles if c["record_id"] == cycle_id]
    assert cycle["phase"] == "pre_transplant" and placed[cycle_id] == [entry]


def test_an_issue_an_earlier_version_raised_resolves_at_the_next_pass(tmp_path: Path) -> None:
    """Upgrading: the catalog did not change, yet the old ``not_final`` issues must close."""
    config = demo_sandbox(tmp_path)
    job.run_once(config, config.sites)
    sessions = db.open_store(config.store.url)
    with sessions.begin() as session:
        withdrawn = session.scalars(
            sa.select(models.SourceResource).where(
                models.SourceResource.site == NORTH, models.SourceResource.outcome == "withdrawn"
            )
        ).all()
        assert len(withdrawn) == 1
        row = withdrawn[0]
        ref = f"{row.resource_type}/{row.resource_id}"
        row.outcome = "issue"  # as the earlier version stored it, with its issue
        old = MappingIssue(
            site=NORTH,
            kind=IssueKind.NOT_FINAL,
            scope=ref,
            detail=f"{ref}: creatinine result has status 'entered-in-error'; only final results are used",
            source_refs=(ref,),
        )
        state.replace_issues(session, NORTH, ref, [old])

    result = job.run_once(config, config.sites)

    (north,) = [s for s in result.syncs if s.site == NORTH]
    assert north.resources_mapped == 1 and north.issues_resolved == 1
    with sessions() as session:
        issue = session.get(models.IssueRow, old.key)
        stored = session.get(models.SourceResource, (NORTH, *ref.split("/")))
        assert issue is not None and issue.status == "resolved"
        assert stored is not None and stored.outcome == "withdrawn"
    again = job.run_once(config, config.sites)
    assert all(s.resources_mapped == 0 for s in again.syncs), "re-mapped once, not at every pass"


def test_coverage_counts_them_apart_from_mapped_and_issues(tmp_path: Path) -> None:
    config = demo_sandbox(tmp_path)
    job.run_once(config, config.sites)
    with db.open_store(config.store.url)() as session:
        cover = coverage.site_coverage(session, NORTH)
        given = session.scalar(
            sa.select(sa.func.count()).where(
                models.SourceResource.site == NORTH,
                models.SourceResource.outcome == "mapped",
                models.SourceResource.resource_type == "MedicationAdministration",
                models.SourceResource.patient_ref.is_not(None),
            )
        )
    administrations, observations = cover.by_type["MedicationAdministration"], cover.by_type["Observation"]
    assert (administrations.not_counted, observations.not_counted) == (1, 1)  # the bag, the creatinine
    considered = administrations.total - administrations.ignored - administrations.outside - 1
    assert administrations.share_mapped == administrations.mapped / considered
    assert cover.issues_by_kind.get("not_final") == 1  # only the preliminary MRD result
    # A dose not given is kept as a fact, but it is no blinatumomab fact of the coverage.
    mobilization = cover.facts_by_concept.get("mobilization", 0)
    assert cover.facts_by_concept["blinatumomab"] + mobilization == given
