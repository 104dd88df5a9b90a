"""Deriving the protocol records of the subjects a pass touched, and enqueueing what changed.

The ingest and the re-map mark the subjects whose facts changed as dirty,
and a changed site practice marks all the site's subjects (``site_practice``);
``derive_dirty`` runs the protocol derivation for each, pseudonymises the
records and reconciles them with the stored ones, so only a changed record
reaches the outbox.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from adapter import privacy
from adapter.mapping.facts import Fact
from adapter.protocol import context
from adapter.protocol.derive import derive_subject
from adapter.store import records, state
from adapter.store.issues_batch import PageIssues
from adapter.sync import site_practice
from adapter.sync.runs import StopCheck, SyncStopped, SyncSummary
from adapter.sync.setup import SiteSetup

# Subjects derived per transaction: a commit per subject was a third of the
# derivation's time on SQLite; a batch keeps a stop or crash cheap (what is
# not committed stays dirty and is derived again by the next pass).
SUBJECTS_PER_TRANSACTION = 50


def derive_dirty(
    setup: SiteSetup, sessions: sessionmaker[Session], summary: SyncSummary, should_stop: StopCheck
) -> None:
    """Re-derive every subject marked dirty and enqueue what changed.

    A subject's records, its outbox items and the clearing of its dirty mark
    commit together, with a few dozen other subjects' (``SUBJECTS_PER_TRANSACTION``),
    and the batch reads and writes its facts, records and issues with a few
    statements, not a few per subject.
    """
    site_id = setup.site.id
    with sessions.begin() as session:
        site_practice.note_practice_change(session, setup)
        subjects = state.dirty_subjects(session, site_id)
    for start in range(0, len(subjects), SUBJECTS_PER_TRANSACTION):
        if should_stop():
            raise SyncStopped
        batch = subjects[start : start + SUBJECTS_PER_TRANSACTION]
        with sessions.begin() as session:
            issues = PageIssues()  # the batch's derivation issues, written with a few statements
            fact_payloads = state.subjects_fact_payloads(session, site_id, batch)  # one read for the batch
            derived: dict[str, dict[str, dict[str, Any]]] = {}
            for subject_id in batch:
                facts = state.facts_from_json(fact_payloads.pop(subject_id))
                derived[subject_id] = _derive_subject(setup, subject_id, facts, issues)
            upserts, retractions = records.reconcile_subjects(session, site_id, derived)
            summary.upserts += upserts
            summary.retractions += retractions
            summary.subjects_derived += len(batch)
            issues.write(session)
            state.clear_dirty(session, site_id, batch)


def _derive_subject(
    setup: SiteSetup, subject_id: str, facts: list[Fact], issues: PageIssues
) -> dict[str, dict[str, Any]]:
    """One subject's records derived from its stored facts, pseudonymised, by record id.

    Its derivation issues wait in ``issues`` for the batch's write, and its
    records for the batch's reconciliation with what was sent.
    """
    site_id = setup.site.id
    entry = setup.roster.entry(subject_id)
    subject = context.SubjectContext(
        study=setup.study,
        site=site_id,
        subject_id=subject_id,
        enrolment_date=entry.enrolment_date if entry else None,
        catalog_version=setup.catalog.version,
        spo2_without_oxygen_record=setup.site.spo2_without_oxygen_record,
    )
    derivation = derive_subject(facts, subject, setup.rules)
    payloads = {
        record.record_id: privacy.pseudonymize_record(
            record.model_dump(mode="json"),
            setup.secret,
            site_id,
            max_date_shift_days=setup.date_shift_days,
        )
        for record in derivation.records
    }
    issues.replace(site_id, f"derive:{subject_id}", derivation.issues, known=True)
    return payloads
