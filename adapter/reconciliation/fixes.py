"""One-step fixes for mapping issues, shared by the console and the CLI.

A data manager who sees an ``unknown_code`` issue wants one action, not a
text editor and a terminal: map the local code to a catalog concept (or a
unit spelling to UCUM, or mark the code as not a protocol concept), and see
what that changed.  Each fix here

1. writes the site's own fix file ``<overrides>/<site>.toml``
   (``adapter.mapping.overrides``: in the site's state folder, never in the
   installed package), touching only the one line it adds or changes, so the
   comments and the layout a person wrote stay as they were (sites extend
   the catalog in their own file, never in ``concepts.toml``);
2. reloads the site's catalog, and puts the file back as it was if the
   change makes it invalid (a code cannot mean two concepts);
3. re-maps the stored resources with ``sync.remap_site``, so the records are
   re-derived and the issues the fix resolves close themselves;
4. reports how many protocol records changed and which issues resolved or
   opened, and writes all of it, with the value before and after, to the
   audit log.

``ignore_issue`` and ``undo`` complete the set.  Nothing here checks roles:
who may do what is the caller's policy (``adapter.web.auth``, the CLI's
operator); the library records who did it.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapter import actors, errors
from adapter import config as config_mod
from adapter.mapping import catalog as catalog_mod
from adapter.mapping import overrides, units
from adapter.store import locks, models, state
from adapter.store.models import utcnow
from adapter.sync import SiteSetup, remap_site

MAP_CODE = "mapping.code"
MAP_UNIT = "mapping.unit"
IGNORE_CODE = "mapping.ignore_code"
IGNORE_ISSUE = "issue.ignore"  # the same action name the CLI's `issues ignore` writes
UNDO = "undo"

MAPPING_ACTIONS = {MAP_CODE: "codes", MAP_UNIT: "units", IGNORE_CODE: "ignored_codes"}
UNDOABLE = (*MAPPING_ACTIONS, IGNORE_ISSUE)

log = logging.getLogger(__name__)


class FixRefused(errors.AdapterError):
    """The fix cannot be made as asked; the message says why and what to do instead."""

    exit_code = errors.EXIT_USAGE


@dataclass(frozen=True)
class FixResult:
    """What a fix did, for the console's result page and the CLI's report."""

    audit_id: int
    action: str
    site: str | None
    summary: str
    records_changed: int = 0
    records_by_type: dict[str, int] = field(default_factory=dict)
    subjects: tuple[str, ...] = ()
    issues_resolved: tuple[str, ...] = ()
    issues_opened: tuple[str, ...] = ()
    file: str | None = None  # the site fix file the fix wrote, so a person knows where it went


# ----------------------------------------------------------------- the fixes


def map_code(
    config: config_mod.Config,
    sessions: sessionmaker[Session],
    site_id: str,
    code: str,
    concept: str,
    *,
    actor: str,
    issue_key: str | None = None,
) -> FixResult:
    """Make the local ``system|code`` mean ``concept`` at one site, then re-map."""
    code = _code_text(code)
    catalog = _catalog(config, site_id)
    if concept not in catalog.concepts:
        raise FixRefused(f"unknown concept {concept!r}; known: {', '.join(sorted(catalog.concepts))}")
    key = _parse_code(catalog, code)
    current = catalog.codes.get(key)
    if current == concept:
        raise FixRefused(f"{code} already means {concept!r} at {site_id}; nothing to change")
    if current is not None and catalog.code_sources.get(key) == "central":
        raise FixRefused(
            f"{code} means {current!r} in the central concepts.toml; a site cannot remap it "
            "(ask the study's data management to change the catalog)"
        )
    if key in catalog.ignored_codes:
        raise FixRefused(
            f"{code} is listed under [ignored_codes] for {site_id}; undo that first, then map it"
        )
    edit = _OverrideEdit(MAP_CODE, code, concept, f"Mapped {code} to {concept} at {site_id}")
    return _apply_override(config, sessions, site_id, edit, actor=actor, issue_key=issue_key)


def map_unit(
    config: config_mod.Config,
    sessions: sessionmaker[Session],
    site_id: str,
    spelling: str,
    ucum: str,
    *,
    actor: str,
    issue_key: str | None = None,
) -> FixResult:
    """Read the site's unit ``spelling`` as the UCUM unit ``ucum``, then re-map."""
    spelling, ucum = spelling.strip(), ucum.strip()
    if not spelling:
        raise FixRefused("a result without any unit cannot be fixed by a unit mapping; ask the site")
    if not units.is_known(ucum):
        raise FixRefused(f"{ucum!r} is not a UCUM unit the adapter reads (e.g. umol/L, 10*9/L, mg/dL)")
    catalog = _catalog(config, site_id)
    if catalog.unit_spellings.get(spelling) == ucum:
        raise FixRefused(f"{spelling!r} already reads as {ucum} at {site_id}; nothing to change")
    edit = _OverrideEdit(MAP_UNIT, spelling, ucum, f"Unit {spelling!r} now reads as {ucum} at {site_id}")
    return _apply_override(config, sessions, site_id, edit, actor=actor, issue_key=issue_key)


def ignore_code(
    config: config_mod.Config,
    sessions: sessionmaker[Session],
    site_id: str,
    code: str,
    reason: str,
    *,
    actor: str,
    issue_key: str | None = None,
) -> FixResult:
    """List a local code under ``[ignored_codes]``: it is not a protocol concept."""
    code, reason = _code_text(code), _reason(reason)
    catalog = _catalog(config, site_id)
    key = _parse_code(catalog, code)
    if key in catalog.codes:
        raise FixRefused(f"{code} means {catalog.codes[key]!r}; a mapped code cannot also be ignored")
    if key in catalog.ignored_codes:
        raise FixRefused(f"{code} is already ignored at {site_id}")
    edit = _OverrideEdit(IGNORE_CODE, code, reason, f"{code} is no longer a protocol concept at {site_id}")
    return _apply_override(config, sessions, site_id, edit, actor=actor, issue_key=issue_key)


def ignore_issue(sessions: sessionmaker[Session], key: str, reason: str, *, actor: str) -> FixResult:
    """Mark one open issue as needing no fix; the reason is required and audited."""
    _check_actor(actor)
    reason = _reason(reason)
    with sessions.begin() as session:
        row = session.get(models.IssueRow, key)
        if row is None:
            raise FixRefused(f"no issue with key {key!r}")
        if row.status != "open":
            raise FixRefused(f"the issue is {row.status}, not open; only open issues can be ignored")
        before, reason_before = row.status, row.reason
        row.status, row.reason, row.resolved_at = "ignored", reason, utcnow()
        entry = state.audit(
            session,
            actor,
            IGNORE_ISSUE,
            key,
            site=row.site,
            before=before,
            after="ignored",
            reason=reason,
            reason_before=reason_before,
        )
        site = row.site
    return FixResult(audit_id=entry.id, action=IGNORE_ISSUE, site=site, summary=f"Ignored {key}: {reason}")


def undo(
    config: config_mod.Config, sessions: sessionmaker[Session], audit_id: int, *, actor: str
) -> FixResult:
    """Reverse one audited fix, if nothing has changed the same thing since."""
    _check_actor(actor)
    with sessions() as session:
        entry = session.get(models.AuditEntry, audit_id)
        if entry is None:
            raise FixRefused(f"no audit entry {audit_id}")
        if entry.action not in UNDOABLE:
            raise FixRefused(f"{entry.action} cannot be undone")
        if undone_by(session, audit_id) is not None:
            raise FixRefused(f"audit entry {audit_id} was already undone")
        action, detail = entry.action, dict(entry.detail)
    if action == IGNORE_ISSUE:
        return _undo_ignore(sessions, audit_id, detail, actor)
    site_id, table, key = detail["site"], MAPPING_ACTIONS[action], detail["key"]
    current = overrides.read_override(_override_path(config, site_id)).get(table, {}).get(key)
    if current != detail["after"]:
        raise FixRefused(
            f"[{table}] {key!r} has changed since audit entry {audit_id} "
            f"(now {current!r}); undo the later change first"
        )
    edit = _OverrideEdit(UNDO, key, detail["before"], f"Undid audit entry {audit_id} ({action} {key})", table)
    return _apply_override(config, sessions, site_id, edit, actor=actor, undoes=audit_id)


def migrate_legacy_overrides(config: config_mod.Config, sessions: sessionmaker[Session], site_id: str) -> int:
    """Carry fixes made before the site had its own fix file into it, once; return how many.

    Earlier versions wrote fixes into the mapping folder's ``sites/<site>.toml``,
    which for the bundled catalog lies inside the installed package: an
    upgrade or a rebuilt container image loses them.  The audit log kept
    every fix with its value (and every undo), so the fixes still in effect
    are replayed from it into the new file, whether or not the old file
    survived.  Runs only while the site has no fix file yet, so it happens
    once; fixes already written to the new file are never replayed.
    """
    path = _override_path(config, site_id)
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
    _refuse_unwritable(path)
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


def undone_by(session: Session, audit_id: int) -> int | None:
    """The id of the audit entry that undid ``audit_id``, if any."""
    return session.scalar(
        sa.select(models.AuditEntry.id).where(
            models.AuditEntry.action == UNDO, models.AuditEntry.target == f"audit:{audit_id}"
        )
    )


# ----------------------------------------------------------------- applying and reporting


@dataclass(frozen=True)
class _OverrideEdit:
    """One line of a site override file to set (``value=None``: remove), and how to say so.

    Each fix checks its own preconditions and then only describes its edit;
    ``_apply_override`` does the rest (lock, write, re-map, audit), the same
    way for all of them.
    """

    action: str  # MAP_CODE, MAP_UNIT, IGNORE_CODE or UNDO: the audit entry's action
    key: str
    value: str | None
    summary: str  # what was done, for people; the counts of what it changed are appended
    table: str | None = None  # default: the action's table (an undo names the one it reverses)


def _apply_override(
    config: config_mod.Config,
    sessions: sessionmaker[Session],
    site_id: str,
    edit: _OverrideEdit,
    *,
    actor: str,
    issue_key: str | None = None,
    undoes: int | None = None,
) -> FixResult:
    _check_actor(actor)  # it goes into the file's comment: no line of its own, whoever called
    site = config.site(site_id)
    action, key, value = edit.action, edit.key, edit.value
    table = edit.table or MAPPING_ACTIONS[action]
    path = _override_path(config, site_id)
    # The site's sync lock: a fix's re-map and a scheduled pass of the same
    # site must never write at once.  Refuse rather than wait inside a request.
    site_lock = locks.try_acquire(sessions, site_id)
    if site_lock is None:
        raise FixRefused(f"site {site_id} is being synced right now; nothing was changed, try again shortly")
    _refuse_unwritable(path)
    with site_lock, overrides.folder_lock(path.parent):
        migrate_legacy_overrides(config, sessions, site_id)
        with sessions() as session:
            outbox_before = _last_outbox_id(session)
            open_before = _open_issue_keys(session, site_id)
        old_text = path.read_text(encoding="utf-8") if path.exists() else None
        note = f"by {actor}, {utcnow():%Y-%m-%d}" if value is not None and table != "ignored_codes" else ""
        try:
            before = overrides.set_override(path, table, key, value, note=note)
        except OSError as exc:
            raise errors.ConfigError(
                f"cannot store the fix in {path} ({exc.strerror or exc}); nothing was changed. "
                "Make the file and its folder writable for the adapter's user, or set [study] overrides"
            ) from exc
        try:
            setup = SiteSetup.load(config, site)
        except errors.MappingError:
            _restore(path, old_text)
            raise
        try:
            summary = remap_site(setup, sessions)
        except BaseException:
            # Resources already re-mapped carry the new catalog version; with the old
            # file back, the next sync sees the mismatch and maps them back.
            _restore(path, old_text)
            raise
        with sessions.begin() as session:
            changed = _queued_since(session, site_id, outbox_before)
            open_after = _open_issue_keys(session, site_id)
            by_type = Counter(record.record_type for record in changed.values())
            subjects = tuple(sorted({record.subject_id for record in changed.values()}))
            resolved = tuple(sorted(open_before - open_after))
            opened = tuple(sorted(open_after - open_before))
            detail: dict[str, Any] = {
                "site": site_id,
                "file": str(path),
                "table": table,
                "key": key,
                "before": before,
                "after": value,
                "catalog_version": setup.catalog.version,
                "resources_remapped": summary.resources_mapped,
                "records_changed": len(changed),
                "records_by_type": dict(sorted(by_type.items())),
                "subjects": list(subjects),
                "issues_resolved": list(resolved),
                "issues_opened": list(opened),
            }
            if issue_key is not None:
                detail["issue"] = issue_key
            if undoes is not None:
                detail["undoes"] = undoes
            target = f"audit:{undoes}" if undoes is not None else f"{site_id}:{table}:{key}"
            entry = state.audit(session, actor, action, target, **detail)
    return FixResult(
        audit_id=entry.id,
        action=action,
        site=site_id,
        summary=f"{edit.summary}: {_counts_sentence(len(changed), resolved, opened)}",
        records_changed=len(changed),
        records_by_type=dict(sorted(by_type.items())),
        subjects=subjects,
        issues_resolved=resolved,
        issues_opened=opened,
        file=str(path),
    )


def _undo_ignore(
    sessions: sessionmaker[Session], audit_id: int, detail: dict[str, Any], actor: str
) -> FixResult:
    with sessions.begin() as session:
        entry = session.get(models.AuditEntry, audit_id)
        assert entry is not None  # noqa: S101  (checked by the caller in this request)
        row = session.get(models.IssueRow, entry.target)
        if row is None or row.status != "ignored":
            raise FixRefused(f"the issue is no longer ignored (now {row.status if row else 'gone'})")
        restored = detail.get("before") or "open"
        row.status, row.reason = restored, detail.get("reason_before")
        row.resolved_at = None if restored == "open" else row.resolved_at
        undo_entry = state.audit(
            session,
            actor,
            UNDO,
            f"audit:{audit_id}",
            undoes=audit_id,
            site=row.site,
            issue=row.key,
            before="ignored",
            after=restored,
        )
    return FixResult(
        audit_id=undo_entry.id,
        action=UNDO,
        site=row.site,
        summary=f"Undid audit entry {audit_id}: {row.key} is {restored} again",
    )


def _counts_sentence(changed: int, resolved: tuple[str, ...], opened: tuple[str, ...]) -> str:
    parts = [
        f"{changed} protocol record{'s' if changed != 1 else ''} changed",
        f"{len(resolved)} issue{'s' if len(resolved) != 1 else ''} resolved",
    ]
    if opened:
        parts.append(f"{len(opened)} new issue{'s' if len(opened) != 1 else ''} opened")
    return ", ".join(parts) + "."


@dataclass(frozen=True)
class _Queued:
    record_type: str
    subject_id: str


def _last_outbox_id(session: Session) -> int:
    return int(session.scalar(sa.select(sa.func.max(models.OutboxItem.id))) or 0)


def _queued_since(session: Session, site: str, last_id: int) -> dict[str, _Queued]:
    """The records the fix queued for the repository, read from the outbox itself.

    The fix holds the site's lock, so every item of the site after
    ``last_id`` is the fix's own: the report says exactly what will be sent,
    no more (a record whose only change is the catalog stamp is not sent,
    see ``state.reconcile_records``) and no less.
    """
    rows = session.execute(
        sa.select(models.OutboxItem.record_id, models.OutboxItem.record_type, models.OutboxItem.subject_id)
        .where(models.OutboxItem.site == site, models.OutboxItem.id > last_id)
        .order_by(models.OutboxItem.id)
    )
    return {record_id: _Queued(record_type, subject_id) for record_id, record_type, subject_id in rows}


def _open_issue_keys(session: Session, site: str) -> set[str]:
    return set(
        session.scalars(
            sa.select(models.IssueRow.key).where(
                models.IssueRow.site == site, models.IssueRow.status == "open"
            )
        )
    )


def _restore(path: Path, old_text: str | None) -> None:
    if old_text is None:
        path.unlink(missing_ok=True)
    else:
        overrides.write_atomically(path, old_text)


def _override_path(config: config_mod.Config, site_id: str) -> Path:
    config.site(site_id)  # an unknown site is a ConfigError naming the known ones
    return overrides.path_for(config.overrides_dir(), site_id)


def _refuse_unwritable(path: Path) -> None:
    """Say where a fix would go and why it cannot, before anything is locked or changed."""
    verdict = overrides.writability(path)
    if not verdict.writable:
        raise errors.ConfigError(f"cannot store the fix in {path}: {verdict.problem}")


def _catalog(config: config_mod.Config, site_id: str) -> catalog_mod.Catalog:
    config.site(site_id)
    return catalog_mod.load_catalog(config.study.mappings, site_id, config.overrides_dir())


def _code_text(code: str) -> str:
    code = code.strip()
    system, sep, value = code.partition("|")
    if not sep or not system.strip() or not value.strip():
        raise FixRefused(f'code {code!r} must be written "system|code"')
    return f"{system.strip()}|{value.strip()}"


def _parse_code(catalog: catalog_mod.Catalog, code: str) -> tuple[str, str]:
    system, _sep, value = code.partition("|")
    return catalog.canonical_system(system), value


def _check_actor(actor: str) -> None:
    """Refuse an actor outside the one rule for names (``adapter.actors``) before anything is written.

    The CLI and the console check names already; this is the last line, so
    no caller can write a line break into the site's file or the audit log.
    """
    if not actors.is_actor(actor):
        raise FixRefused(f"actor {actor!r} is not a valid name ({actors.RULE}); nothing was changed")


def _reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if not reason:
        raise FixRefused("a reason is required: say why this needs no fix")
    return reason[:1000]
