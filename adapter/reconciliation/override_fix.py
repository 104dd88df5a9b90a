"""Applying a fix that edits the site's fix file: the steps every such fix shares.

Each mapping fix (``fixes``) and the undo of one (``undoing``) checks its own
preconditions and then only describes its edit as an ``OverrideFix``;
``apply_fix`` does the rest, the same way for all of them:

1. takes the site's sync lock (a fix's re-map and a scheduled pass of the
   same site must never write at once) and the fix folder's lock;
2. edits the one line in ``<overrides>/<site>.toml`` (``adapter.mapping.overrides``);
3. reloads the site's catalog, and puts the file back as it was if the
   change makes it invalid (a code cannot mean two concepts);
4. re-maps the stored resources with ``sync.remap_site``, so the records are
   re-derived and the issues the fix resolves close themselves (if loading
   or re-mapping fails in any way, the file goes back as it was too);
5. writes what changed (``changes``), with the value before and after, to
   the audit log and returns it.

A caller that shows a fix while it runs (the console's jobs) passes
``progress``: it is told each step as it starts, and during the re-map how
many of the site's stored resources are done.  The CLI passes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter.mapping import overrides
from adapter.reconciliation import site_files
from adapter.reconciliation.actions import MAPPING_ACTIONS, FixResult, SiteBusy, check_actor
from adapter.reconciliation.changes import Changes, Snapshot
from adapter.reconciliation.legacy import migrate_legacy_overrides
from adapter.store import locks, state
from adapter.store.models import utcnow
from adapter.sync import SiteSetup, remap_site

# The steps ``progress`` is told, in order.
WRITING = "writing the site's fix file"
REMAPPING = "re-mapping the site's stored resources"  # done/total: resources; records re-derived after
RECORDING = "recording what changed in the audit log"


class FixProgress(Protocol):
    """Told the step a fix has reached; during ``REMAPPING`` also ``done`` of ``total`` resources."""

    def __call__(self, stage: str, done: int = 0, total: int = 0) -> None: ...


def no_progress(stage: str, done: int = 0, total: int = 0) -> None:
    """What a fix reports to when nobody watches it (the CLI)."""


@dataclass(frozen=True)
class OverrideFix:
    """One line of a site's fix file to set (``value=None``: remove), and how to say so."""

    action: str  # MAP_CODE, MAP_UNIT, IGNORE_CODE or UNDO: the audit entry's action
    key: str
    value: str | None
    summary: str  # what was done, for people; the counts of what it changed are appended
    table: str | None = None  # default: the action's table (an undo names the one it reverses)


def apply_fix(
    config: config_mod.Config,
    sessions: sessionmaker[Session],
    site_id: str,
    fix: OverrideFix,
    *,
    actor: str,
    issue_key: str | None = None,
    undoes: int | None = None,
    progress: FixProgress = no_progress,
    extra_detail: Mapping[str, object] | None = None,
) -> FixResult:
    """Edit the site's fix file, re-map the site and audit what changed (see the module's steps).

    ``extra_detail`` adds to the audit entry's detail; it never replaces what the fix records.
    """
    check_actor(actor)  # it goes into the file's comment: no line of its own, whoever called
    site = config.site(site_id)
    action, key, value = fix.action, fix.key, fix.value
    table = fix.table or MAPPING_ACTIONS[action]
    path = site_files.fix_file(config, site_id)
    overrides.refuse_unwritable(path)  # before anything is locked: a refusal must leave no lock behind
    # Refuse rather than wait for the site's lock inside a request.
    site_lock = locks.try_acquire(sessions, site_id)
    if site_lock is None:
        raise SiteBusy(f"site {site_id} is being synced right now; nothing was changed, try again shortly")
    with site_lock:
        # Before the folder lock: the migration takes that lock itself, and a
        # second flock on the same file blocks even within one process.
        migrate_legacy_overrides(config, sessions, site_id)
        with overrides.folder_lock(path.parent):
            progress(WRITING)
            with sessions() as session:
                before = Snapshot.take(session, site_id)
            edit = overrides.edit(path, table, key, value, author=actor, on=utcnow().date())
            try:
                setup = SiteSetup.load(config, site)  # an invalid change fails here
                progress(REMAPPING)
                summary = remap_site(
                    setup, sessions, progress=lambda done, total: progress(REMAPPING, done, total)
                )
            except BaseException:
                # Whatever failed, the file goes back.  Resources already re-mapped carry the
                # new catalog version; with the old file back, the next sync maps them back.
                edit.restore()
                raise
            progress(RECORDING)
            with sessions.begin() as session:
                changes = Changes.since(session, site_id, before)
                detail: dict[str, Any] = {
                    "site": site_id,
                    "file": str(path),
                    "table": table,
                    "key": key,
                    "before": edit.before,
                    "after": value,
                    "catalog_version": setup.catalog.version,
                    "resources_remapped": summary.resources_mapped,
                    "records_changed": changes.records_changed,
                    "records_by_type": changes.records_by_type,
                    "subjects": list(changes.subjects),
                    "issues_resolved": list(changes.issues_resolved),
                    "issues_opened": list(changes.issues_opened),
                }
                if issue_key is not None:
                    detail["issue"] = issue_key
                if undoes is not None:
                    detail["undoes"] = undoes
                for name, added in (extra_detail or {}).items():
                    detail.setdefault(name, added)
                target = f"audit:{undoes}" if undoes is not None else f"{site_id}:{table}:{key}"
                entry = state.audit(session, actor, action, target, **detail)
    return FixResult(
        audit_id=entry.id,
        action=action,
        site=site_id,
        summary=f"{fix.summary}: {changes.sentence()}",
        records_changed=changes.records_changed,
        records_by_type=dict(changes.records_by_type),
        subjects=changes.subjects,
        issues_resolved=changes.issues_resolved,
        issues_opened=changes.issues_opened,
        file=str(path),
    )
