"""The sync side of deletions between sweeps: a page's ``deleted`` refs (``adapter.sync.deletions``).

The demo site is synced from its NDJSON folder once; then a source that
reads incrementally and reports deletions (as a REST source's history or a
Bulk export's deleted files would) runs the next passes.  What is retired,
what is ignored, what the guard holds back, and that a crash or a second
report changes nothing twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from adapter import config as config_mod
from adapter import sync
from adapter.delivery import outbox
from adapter.fhir.source import BadLine, Page, SourceLine
from adapter.sinks import factory as sinks
from adapter.store import db, models
from adapter.sync import deletions

from golden import repository_records

SITE = "demo-north"
TRANSPLANT = "Procedure/prc-81347760c93d"  # N-001's transplant
CREATININE = "Observation/obs-5c55fe2d8419"  # N-001's screening creatinine
NOW = dt.datetime(2025, 6, 1, 10, 0, tzinfo=dt.UTC)


class Deleting:
    """An incremental pass in which nothing changed but ``deleted`` was deleted at the site.

    Each type's deletions ride on its one page, as a REST source's history
    does on the first page.  ``crash_after`` raises after that many committed
    pages of a type with deletions (the power cut between a type's pages).
    """

    complete_listing = False

    def __init__(self, inner: Any, deleted: dict[str, list[str]], crash_after: int | None = None) -> None:
        self.inner, self.deleted, self.left = inner, deleted, crash_after

    def patients(self) -> Iterator[SourceLine | BadLine]:
        return self.inner.patients()  # type: ignore[no-any-return]

    def pages(
        self, resource_type: str, *, patient_refs: Sequence[str], since: Any, resume: str | None
    ) -> Iterator[Page]:
        yield Page(lines=[], cursor="after-deletions", deleted=self.deleted.get(resource_type, []))
        if self.left is not None and resource_type in self.deleted:
            if self.left == 0:
                raise RuntimeError("power cut")
            self.left -= 1
        yield Page(lines=[], cursor=None, watermark=NOW)

    def expected_total(self) -> int | None:
        return None


@pytest.fixture
def north(fresh_demo: config_mod.Config) -> tuple[config_mod.Config, sync.SiteSetup, Any]:
    config = fresh_demo.model_copy(update={"sites": [s for s in fresh_demo.sites if s.id == SITE]})
    setup, sessions = sync.SiteSetup.load(config, config.sites[0]), db.open_store(config.store.url)
    sync.sync_site(setup, sessions)
    outbox.drain(sessions, sinks.make_sink(config.repository))
    return config, setup, sessions


def row(sessions: Any, ref: str) -> tuple[str, int]:
    """(outcome, facts) of a stored resource."""
    resource_type, _, resource_id = ref.partition("/")
    with sessions() as session:
        stored = session.get(models.SourceResource, (SITE, resource_type, resource_id))
        assert stored is not None
        facts = session.scalar(
            sa.select(sa.func.count()).select_from(models.FactRow).where(models.FactRow.source_ref == ref)
        )
        return stored.outcome, int(facts or 0)


def delivered(config: config_mod.Config, sessions: Any) -> dict[str, list[dict[str, Any]]]:
    outbox.drain(sessions, sinks.make_sink(config.repository))
    return repository_records(config)


def test_a_reported_deletion_is_retired_and_retracted_in_the_same_pass(north: Any) -> None:
    config, setup, sessions = north
    before = repository_records(config)
    assert row(sessions, TRANSPLANT)[1] > 0
    source = Deleting(setup.make_source(), {"Procedure": [TRANSPLANT]})
    summary = sync.sync_site(setup, sessions, source=source)
    assert summary.vanished == 1 and summary.retractions >= 1 and summary.held == {}
    assert row(sessions, TRANSPLANT) == ("deleted", 0)
    with sessions() as session:
        assert not session.scalars(sa.select(models.DirtySubject)).all()  # derived in the same pass
    after = delivered(config, sessions)
    assert len(after["Transplant.ndjson"]) == len(before["Transplant.ndjson"]) - 1


def test_the_same_deletion_twice_changes_nothing_the_second_time(north: Any) -> None:
    config, setup, sessions = north
    source = Deleting(setup.make_source(), {"Observation": [CREATININE]})
    assert sync.sync_site(setup, sessions, source=source).vanished == 1
    once = delivered(config, sessions)
    again = sync.sync_site(setup, sessions, source=source)
    assert again.vanished == 0 and again.upserts == again.retractions == again.subjects_derived == 0
    assert delivered(config, sessions) == once
    assert row(sessions, CREATININE) == ("deleted", 0)


def test_refs_of_other_types_unknown_ids_and_junk_are_ignored(north: Any) -> None:
    config, setup, sessions = north
    before = repository_records(config)
    junk = [CREATININE, "Observation/never-stored", "Observation/", "Procedure", "", "Patient/p1"]
    source = Deleting(setup.make_source(), {"Procedure": junk, "Observation": [TRANSPLANT]})
    summary = sync.sync_site(setup, sessions, source=source)
    assert summary.vanished == 0 and summary.held == {}
    assert row(sessions, CREATININE)[0] != "deleted" and row(sessions, TRANSPLANT)[0] != "deleted"
    assert delivered(config, sessions) == before


def test_a_crash_after_the_page_with_the_deletions_keeps_them_and_the_resumed_pass_is_harmless(
    north: Any,
) -> None:
    _config, setup, sessions = north
    crashing = Deleting(setup.make_source(), {"Procedure": [TRANSPLANT]}, crash_after=0)
    with pytest.raises(RuntimeError, match="power cut"):
        sync.sync_site(setup, sessions, source=crashing)
    assert row(sessions, TRANSPLANT) == ("deleted", 0)  # committed with its page
    with sessions() as session:
        cursor = session.get(models.SyncCursor, (SITE, "Procedure"))
        assert cursor is not None and cursor.resume == "after-deletions"  # the watermark did not move
        assert session.scalars(sa.select(models.DirtySubject)).all()  # re-derived by the next pass

    resumed = sync.sync_site(
        setup, sessions, source=Deleting(setup.make_source(), {"Procedure": [TRANSPLANT]})
    )
    assert resumed.vanished == 0 and resumed.retractions >= 1  # the record the crash left goes now
    with sessions() as session:
        cursor = session.get(models.SyncCursor, (SITE, "Procedure"))
        assert cursor is not None and cursor.resume is None and cursor.watermark is not None


def test_a_crash_before_the_commit_retires_nothing_and_the_next_pass_does(
    north: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config, setup, sessions = north
    with sessions() as session:
        other = session.scalars(
            sa.select(models.SourceResource.resource_id).where(
                models.SourceResource.site == SITE,
                models.SourceResource.resource_type == "Observation",
                models.SourceResource.outcome == "mapped",
                models.SourceResource.resource_id != CREATININE.partition("/")[2],
            )
        ).first()
    second = f"Observation/{other}"
    both = {"Observation": [CREATININE, second]}  # two of hundreds: no guard
    real = deletions.retire
    retired: list[str] = []

    def failing(session: Any, site_id: str, stored: models.SourceResource, summary: Any) -> None:
        real(session, site_id, stored, summary)
        retired.append(stored.resource_id)
        raise RuntimeError("power cut")  # after the first of two, before the page commits

    monkeypatch.setattr(deletions, "retire", failing)
    with pytest.raises(RuntimeError, match="power cut"):
        sync.sync_site(setup, sessions, source=Deleting(setup.make_source(), both))
    assert len(retired) == 1
    assert row(sessions, CREATININE)[0] != "deleted" and row(sessions, second)[0] != "deleted"
    with sessions() as session:
        cursor = session.get(models.SyncCursor, (SITE, "Observation"))
        assert cursor is None or cursor.resume != "after-deletions"  # the page was not committed

    monkeypatch.setattr(deletions, "retire", real)
    again = sync.sync_site(setup, sessions, source=Deleting(setup.make_source(), both))
    assert again.vanished == 2
    assert row(sessions, CREATININE) == row(sessions, second) == ("deleted", 0)


def stored_ids(sessions: Any, resource_type: str) -> list[str]:
    """The ids of the site's stored resources of one type."""
    with sessions() as session:
        return list(
            session.scalars(
                sa.select(models.SourceResource.resource_id).where(
                    models.SourceResource.site == SITE, models.SourceResource.resource_type == resource_type
                )
            )
        )


def test_many_deletions_at_once_are_held_and_the_next_complete_listing_decides(north: Any) -> None:
    config, setup, sessions = north
    before = repository_records(config)
    ids = stored_ids(sessions, "MedicationAdministration")
    refs = [f"MedicationAdministration/{i}" for i in ids]
    source = Deleting(setup.make_source(), {"MedicationAdministration": refs})
    summary = sync.sync_site(setup, sessions, source=source)
    assert summary.held == {"MedicationAdministration": len(ids)} and summary.vanished == 0
    assert delivered(config, sessions) == before
    key = f"{SITE}|retraction_held|retire:MedicationAdministration"
    with sessions() as session:
        held = session.get(models.IssueRow, key)
        assert held is not None and held.status == "open" and held.value == str(len(ids))
        # Said as what happened: the source named them deleted, and the full sweep will check.
        assert f"reports {len(ids)} of the {len(ids)} stored MedicationAdministration resources deleted" in (
            held.detail or ""
        )
        assert "no longer lists" not in (held.detail or "") and "full sweep" in (held.detail or "")
        assert not session.scalars(sa.select(models.RetractionApproval)).all()  # no approval spent

    # The next complete listing (the folder still lists them all) says they were not deleted.
    listing = sync.sync_site(setup, sessions)
    assert listing.held == {} and listing.vanished == 0
    with sessions() as session:
        held = session.get(models.IssueRow, key)
        assert held is not None and held.status == "resolved"


def test_a_few_deletions_pass_the_guard(north: Any) -> None:
    _config, setup, sessions = north
    ids = stored_ids(sessions, "MedicationAdministration")
    share = int(len(ids) * setup.max_retraction_share)  # at the limit, not over it
    assert share >= 2
    refs = [f"MedicationAdministration/{i}" for i in ids[:share]]
    summary = sync.sync_site(
        setup, sessions, source=Deleting(setup.make_source(), {"MedicationAdministration": refs})
    )
    assert summary.vanished == share and summary.held == {}
