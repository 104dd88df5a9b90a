"""Fixes made before a site had its own fix file, carried into it once.

Earlier versions wrote fixes into the mapping folder's ``sites/<site>.toml``,
which for the bundled catalog lies inside the installed package: an upgrade
or a rebuilt container image loses them.  The audit log kept every fix with
its value (and every undo), so the fixes still in effect can be replayed
from it.  The service does it before a site's pass, a fix before its edit.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter.mapping import overrides
from adapter.reconciliation import site_files
from adapter.reconciliation.actions import MAPPING_ACTIONS, UNDO
from adapter.store import models

log = logging.getLogger(__name__)


def migrate_legacy_overrides(config: config_mod.Config, sessions: sessionmaker[Session], site_id: str) -> int:
    """Carry fixes made before the site had its own fix file into it, once; return how many.

    The fixes still in effect are replayed from the audit log into the new
    file, whether or not the old file survived.  Runs only while the site
    has no fix file yet, so it happens once; fixes already written to the
    new file are never replayed.
    """
    path = site_files.fix_file(config, site_id)
    if path.exists():
        return 0
    in_effect: dict[tuple[str, str], str | None] = {}
    with sessions() as session:
        entries = session.scalars(
            sa.select(models.AuditEntry)
            .where(models.AuditEntry.action.in_([*MAPPING_ACTIONS, UNDO]))
            .order_by(models.AuditEntry.id)
        )
        for entry in entries:
            detail = entry.detail or {}
            table, key = detail.get("table"), detail.get("key")
            if detail.get("site") != site_id or table not in overrides.TABLES or not isinstance(key, str):
                continue  # another site, or the undo of an ignored issue
            if detail.get("file") == str(path):
                continue
            in_effect[(table, key)] = detail.get("after")
    moved = {entry: value for entry, value in sorted(in_effect.items()) if isinstance(value, str)}
    if not moved:
        return 0
    overrides.refuse_unwritable(path)
    with overrides.folder_lock(path.parent):
        if path.exists():
            return 0
        for (table, key), value in moved.items():
            overrides.set_override(path, table, key, value, note="moved from the old fix file")
    log.warning(
        "site mapping fixes moved to the site's own fix file",
        extra={"site": site_id, "fixes": len(moved), "file": str(path)},
    )
    return len(moved)
