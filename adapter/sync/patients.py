"""Which of the site's patients are on the roster: the links from Patient resources to subjects.

Each pass first reads the site's Patient resources and matches them to the
roster by identifier; only the link (``Patient/<id>`` → subject) is stored,
never the Patient itself.  A patient who joins the roster has the resources
stored without their body read again; a roster subject no Patient matches
is an issue.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapter import roster
from adapter.fhir.source import BadLine, Source
from adapter.mapping.issues import IssueKind, MappingIssue
from adapter.store import models, state, value_lists
from adapter.store.models import utcnow
from adapter.sync.resources import NOT_KEPT, TOO_LARGE, bad_line
from adapter.sync.runs import Progress, SyncSummary
from adapter.sync.setup import SiteSetup

log = logging.getLogger(__package__)  # "adapter.sync": one logger name for the whole pass


def link_patients(
    setup: SiteSetup,
    source: Source,
    sessions: sessionmaker[Session],
    summary: SyncSummary,
    progress: Progress | None,
) -> tuple[dict[str, str], set[str]]:
    """Match the site's Patient resources to the roster by identifier.

    Returns ``Patient/<id>`` → subject id, and the patient refs whose link
    changed (e.g. a patient just added to the roster), whose stored resources
    must be mapped again.  Only the link is stored; the Patient resource
    itself (names, MRNs, birth date) is never kept.  A patient who joins the
    roster (no subject before, one now) may have resources stored without a
    body; ``_requeue_unkept`` has those read from the source again.
    """
    site_id = setup.site.id
    relinked: set[str] = set()
    joined: set[str] = set()
    with sessions.begin() as session:
        # The site's stored links in one query, not one SELECT per Patient line.
        query = sa.select(models.PatientLink).where(models.PatientLink.site == site_id)
        stored = {link.patient_ref: link for link in session.scalars(query)}
        for line in source.patients():
            summary.resources_read += 1
            if progress:
                progress(1)
            if isinstance(line, BadLine):
                bad_line(session, site_id, line, summary)
                continue
            ref = f"Patient/{line.resource['id']}"
            subject_id = setup.roster.subject_for_identifiers(roster.patient_identifiers(line.resource))
            link = stored.get(ref)
            if link is None:
                stored[ref] = models.PatientLink(site=site_id, patient_ref=ref, subject_id=subject_id)
                session.add(stored[ref])
                if subject_id is not None:
                    joined.add(ref)
            elif link.subject_id != subject_id:
                if link.subject_id is None:
                    joined.add(ref)
                link.subject_id = subject_id
                relinked.add(ref)
        _requeue_unkept(session, site_id, joined)
        subjects = linked_subjects(session, site_id)
        _report_unfound_subjects(session, setup, set(subjects.values()))
        return subjects, relinked


def linked_subjects(session: Session, site_id: str) -> dict[str, str]:
    """The site's stored links to roster subjects: ``Patient/<id>`` → subject id."""
    links = session.execute(
        sa.select(models.PatientLink.patient_ref, models.PatientLink.subject_id).where(
            models.PatientLink.site == site_id, models.PatientLink.subject_id.is_not(None)
        )
    )
    return {ref: subject for ref, subject in links if subject is not None}


def _requeue_unkept(session: Session, site_id: str, joined: set[str]) -> None:
    """Have the resources of patients who just joined the roster read and mapped again.

    A resource of a patient not on the roster is stored without its body
    (``resources._kept_raw``), so when the patient joins, ``remap_stored`` has
    nothing to map.  Instead its stored version becomes ``NOT_KEPT``, so the
    next time the source sends it, it is mapped although unchanged, and the
    site's cursors (watermarks and resume points) are cleared, so that this
    very pass, which reads the sources right after linking, reads every type
    in full: an incremental search or ``_since`` export would not send an
    unchanged resource again.  Both commit with the links, so a pass that
    stops early leaves the next one the same work.  Nothing happens when no
    such row exists: the usual new patient (a first pass, a REST or Bulk
    source that never handed over the patient's data) costs one UPDATE per
    few hundred patients (``value_lists.among_values``), not a full read.
    """
    marked = 0
    for among in value_lists.among_values(session, models.SourceResource.patient_ref, sorted(joined)):
        result = session.execute(
            sa.update(models.SourceResource)
            .where(
                models.SourceResource.site == site_id,
                among,
                models.SourceResource.version != TOO_LARGE,
                models.SourceResource.outcome != "deleted",
            )
            .values(version=NOT_KEPT)
            .execution_options(synchronize_session=False)
        )
        marked += int(result.rowcount or 0)  # type: ignore[attr-defined]
    if marked:
        session.execute(
            sa.update(models.SyncCursor)
            .where(models.SyncCursor.site == site_id)
            .values(watermark=None, resume=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        log.info(
            "patients joined the roster with resources stored without their body: reading the site in full",
            extra={"site": site_id, "patients": len(joined), "resources": marked},
        )


def _report_unfound_subjects(session: Session, setup: SiteSetup, found: set[str]) -> None:
    """One issue per roster subject no Patient at the site has matched yet; gone once one does.

    Without it an enrolled subject whose identifier is mistyped in the roster
    (or written with another identifier system than the site's) would just
    deliver nothing.  The links are the stored ones, so an incremental source
    that returns only changed Patients does not make found subjects look lost.
    The message names the roster line's subject and system, never the MRN.
    """
    site_id = setup.site.id
    for entry in setup.roster.entries:
        scope = f"subject:{entry.subject_id}"
        issues = []
        if entry.subject_id not in found:
            issues.append(
                MappingIssue(
                    site=site_id,
                    kind=IssueKind.SUBJECT_NOT_FOUND,
                    scope=scope,
                    subject_id=entry.subject_id,
                    detail=(
                        f"subject {entry.subject_id} is on the roster, but no Patient at site {site_id} "
                        f"carries its identifier (system {entry.identifier_system[:80]}); check the "
                        "roster's value and system against the EHR, or the source's patient search"
                    ),
                )
            )
        state.replace_issues(session, site_id, scope, issues)
