"""A site's stated practice: audited when it changes, and the site's subjects re-derived.

``[[sites]] spo2_without_oxygen_record`` changes what a subject's facts mean
for screening (docs/design.md §4) while no fact changes, so nothing in a pass
would mark a subject dirty and the stored records would keep the old reading.
Before deriving, a pass therefore compares the configured value with the last
value the audit log holds for the site.  A difference is audited once (actor
``config``) and marks every roster subject of the site dirty in the same
transaction, so the pass re-derives them, the changed records are delivered
like any change, and a crash in between cannot lose the re-derivation.  A
site that never left the default has no entry.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter import config as config_mod
from adapter.store import models, state
from adapter.sync.setup import SiteSetup

CONFIG_ACTOR = "config"  # the audit actor of a change made in the config file, not by a person here
ACTION = "site.practice"
SPO2_SETTING = "spo2_without_oxygen_record"


def audit_target(site_id: str, setting: str) -> str:
    """``<site>:<setting>``: the console's site filter finds targets that start with ``<site>:``."""
    return f"{site_id}:{setting}"


def last_audited(session: Session, site_id: str, setting: str) -> str:
    """The value the audit log last recorded for a site's setting, else the setting's default."""
    query = (
        sa.select(models.AuditEntry.detail)
        .where(
            models.AuditEntry.actor == CONFIG_ACTOR,
            models.AuditEntry.action == ACTION,
            models.AuditEntry.target == audit_target(site_id, setting),
        )
        .order_by(models.AuditEntry.id.desc())
        .limit(1)
    )
    detail = session.scalars(query).first()
    if detail is not None and isinstance(detail.get("after"), str):
        return str(detail["after"])
    return str(config_mod.SiteConfig.model_fields[setting].default)


def note_practice_change(session: Session, setup: SiteSetup) -> bool:
    """Audit a changed practice and mark the site's subjects dirty; True when it had changed.

    Runs in the caller's transaction, so the entry and the dirty marks are
    written together or not at all.
    """
    site = setup.site
    before = last_audited(session, site.id, SPO2_SETTING)
    after = site.spo2_without_oxygen_record
    if after == before:
        return False
    subjects = setup.roster.subject_ids
    state.audit(
        session,
        CONFIG_ACTOR,
        ACTION,
        audit_target(site.id, SPO2_SETTING),
        site=site.id,
        setting=SPO2_SETTING,
        before=before,
        after=after,
        subjects_rederived=len(subjects),
    )
    state.mark_dirty(session, site.id, subjects)
    return True
