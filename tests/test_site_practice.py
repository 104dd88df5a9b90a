"""A site's SpO2 practice through the real pipeline: audited once, eligibility re-derived, delivered.

The demo's subject NCT06507514-E-001 (demo-east) has a screening SpO2 of 98 %
with no oxygen charted, so its SpO2 criterion is unknown by default; with the
site's practice "room_air" it is met, and the delivered record says why.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from adapter import config as config_mod
from adapter import roster
from adapter.protocol import eligibility
from adapter.service import checks, job
from adapter.store import db, models
from adapter.sync import SyncSummary, site_practice

from golden import repository_records

SITE = "demo-east"
SUBJECT = "NCT06507514-E-001"


def with_practice(config: config_mod.Config, value: str) -> config_mod.Config:
    sites = [
        s.model_copy(update={"spo2_without_oxygen_record": value}) if s.id == SITE else s
        for s in config.sites
    ]
    return config.model_copy(update={"sites": sites})


def practice_entries(config: config_mod.Config) -> list[models.AuditEntry]:
    with db.open_store(config.store.url)() as session:
        query = sa.select(models.AuditEntry).where(models.AuditEntry.action == site_practice.ACTION)
        return list(session.scalars(query.order_by(models.AuditEntry.id)))


def eligibility_of(config: config_mod.Config, subject: str) -> dict[str, Any]:
    records = repository_records(config)["EligibilityAssessment.ndjson"]
    return next(r for r in records if r["subject_id"] == subject)


def spo2_of(record: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in record["criteria"] if c["criterion"] == "spo2")


def summary_of(result: job.JobResult, site: str) -> SyncSummary:
    return next(summary for summary in result.syncs if summary.site == site)


def practice_row(config: config_mod.Config) -> checks.Check:
    sessions = db.open_store(config.store.url)
    rows = checks.site_checks(config, config.site(SITE), sessions)
    return next(row for row in rows if row.item == "site practice")


def test_switching_the_practice_is_audited_once_and_re_derives_the_site(
    fresh_demo: config_mod.Config,
) -> None:
    job.run_once(fresh_demo, fresh_demo.sites)
    assert practice_entries(fresh_demo) == []  # the default is never audited
    before = eligibility_of(fresh_demo, SUBJECT)
    assert (spo2_of(before)["status"], spo2_of(before)["reason"]) == ("unknown", eligibility.OXYGEN_UNKNOWN)
    others_before = repository_records(fresh_demo)

    room_air = with_practice(fresh_demo, "room_air")
    assert practice_row(room_air).detail == (
        "spo2_without_oxygen_record = room_air; was unknown, the next sync re-derives the site's eligibility"
    )
    result = job.run_once(room_air, room_air.sites)
    (entry,) = practice_entries(room_air)
    assert (entry.actor, entry.target) == ("config", f"{SITE}:spo2_without_oxygen_record")
    assert entry.detail["before"] == "unknown" and entry.detail["after"] == "room_air"
    assert entry.detail["setting"] == "spo2_without_oxygen_record" and entry.detail["site"] == SITE
    roster_size = len(roster.load_roster(room_air.site(SITE).roster).subject_ids)
    assert entry.detail["subjects_rederived"] == roster_size
    assert summary_of(result, SITE).subjects_derived == roster_size

    after = eligibility_of(room_air, SUBJECT)
    spo2 = spo2_of(after)
    assert (spo2["status"], spo2["reason"], spo2["value"]) == ("met", None, 98.0)
    assert spo2["rule"] == "spo2 > 91 % on room air" + eligibility.PRACTICE_APPLIED
    assert spo2["evidence"] == spo2_of(before)["evidence"]  # the same reading, read by the practice
    assert [c for c in after["criteria"] if c["criterion"] != "spo2"] == [
        c for c in before["criteria"] if c["criterion"] != "spo2"
    ]
    north = [r for r in repository_records(room_air)["EligibilityAssessment.ndjson"] if r["site"] != SITE]
    assert north == [r for r in others_before["EligibilityAssessment.ndjson"] if r["site"] != SITE]
    assert practice_row(room_air).detail == "spo2_without_oxygen_record = room_air"

    # The next pass sees the value it audited: no second entry, nothing re-derived for it.
    again = job.run_once(room_air, room_air.sites)
    assert len(practice_entries(room_air)) == 1
    assert summary_of(again, SITE).upserts == 0

    # Back to the default: audited again, and the records are what they were.
    job.run_once(fresh_demo, fresh_demo.sites)
    entries = practice_entries(fresh_demo)
    assert [(e.detail["before"], e.detail["after"]) for e in entries] == [
        ("unknown", "room_air"),
        ("room_air", "unknown"),
    ]
    assert eligibility_of(fresh_demo, SUBJECT) == before
