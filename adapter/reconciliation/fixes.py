"""One-step fixes for mapping issues, shared by the console and the CLI.

A data manager who sees an ``unknown_code`` issue wants one action, not a
text editor and a terminal: map the local code to a catalog concept (or a
unit spelling to UCUM, or mark the code as not a protocol concept), and see
what that changed.  Each fix here checks what was asked against the site's
catalog and then writes the site's own fix file ``<overrides>/<site>.toml``
(in the site's state folder, never in the installed package; sites extend
the catalog in their own file, never in ``concepts.toml``), re-maps and
audits, the same way for all (``override_fix``).

Each mapping fix is two steps: ``*_fix`` checks what was asked and
describes the edit (cheap, writes nothing), and the fix itself applies it.
The console checks in the request, so a refusal answers at once on the
issue's page, then applies in a background job, which checks again: another
fix may have changed the site's file in between.

``ignore_issue`` and ``undoing.undo`` complete the set.  Nothing here checks
roles: who may do what is the caller's policy (``adapter.web.auth``, the
CLI's operator); the library records who did it.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter.mapping import overrides, units
from adapter.reconciliation import site_files
from adapter.reconciliation.actions import (
    IGNORE_CODE,
    IGNORE_ISSUE,
    MAP_CODE,
    MAP_UNIT,
    FixRefused,
    FixResult,
    check_actor,
)
from adapter.reconciliation.override_fix import FixProgress, OverrideFix, apply_fix, no_progress
from adapter.store import models, state
from adapter.store.models import utcnow


def map_code(
    config: config_mod.Config,
    sessions: sessionmaker[Session],
    site_id: str,
    code: str,
    concept: str,
    *,
    actor: str,
    issue_key: str | None = None,
    progress: FixProgress = no_progress,
    audit_detail: Mapping[str, object] | None = None,
) -> FixResult:
    """Make the local ``system|code`` mean ``concept`` at one site, then re-map.

    ``audit_detail`` is added to the audit entry: an accepted suggestion
    (``suggestions.accept``) records its score and evidence there.
    """
    fix = map_code_fix(config, site_id, code, concept)
    return apply_fix(
        config,
        sessions,
        site_id,
        fix,
        actor=actor,
        issue_key=issue_key,
        progress=progress,
        extra_detail=audit_detail,
    )


def map_code_fix(config: config_mod.Config, site_id: str, code: str, concept: str) -> OverrideFix:
    """The edit ``map_code`` makes, checked against the site's catalog; ``FixRefused`` if it cannot."""
    code = _code_text(code)
    catalog = site_files.catalog(config, site_id)
    if concept not in catalog.concepts:
        raise FixRefused(f"unknown concept {concept!r}; known: {', '.join(sorted(catalog.concepts))}")
    key = overrides.code_key(catalog, code)
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
    return OverrideFix(MAP_CODE, code, concept, f"Mapped {code} to {concept} at {site_id}")


def map_unit(
    config: config_mod.Config,
    sessions: sessionmaker[Session],
    site_id: str,
    spelling: str,
    ucum: str,
    *,
    actor: str,
    issue_key: str | None = None,
    progress: FixProgress = no_progress,
) -> FixResult:
    """Read the site's unit ``spelling`` as the UCUM unit ``ucum``, then re-map."""
    fix = map_unit_fix(config, site_id, spelling, ucum)
    return apply_fix(config, sessions, site_id, fix, actor=actor, issue_key=issue_key, progress=progress)


def map_unit_fix(config: config_mod.Config, site_id: str, spelling: str, ucum: str) -> OverrideFix:
    """The edit ``map_unit`` makes, checked; ``FixRefused`` if it cannot be made."""
    spelling, ucum = spelling.strip(), ucum.strip()
    if not spelling:
        raise FixRefused("a result without any unit cannot be fixed by a unit mapping; ask the site")
    if not units.is_known(ucum):
        raise FixRefused(f"{ucum!r} is not a UCUM unit the adapter reads (e.g. umol/L, 10*9/L, mg/dL)")
    catalog = site_files.catalog(config, site_id)
    if catalog.unit_spellings.get(spelling) == ucum:
        raise FixRefused(f"{spelling!r} already reads as {ucum} at {site_id}; nothing to change")
    return OverrideFix(MAP_UNIT, spelling, ucum, f"Unit {spelling!r} now reads as {ucum} at {site_id}")


def ignore_code(
    config: config_mod.Config,
    sessions: sessionmaker[Session],
    site_id: str,
    code: str,
    reason: str,
    *,
    actor: str,
    issue_key: str | None = None,
    progress: FixProgress = no_progress,
) -> FixResult:
    """List a local code under ``[ignored_codes]``: it is not a protocol concept."""
    fix = ignore_code_fix(config, site_id, code, reason)
    return apply_fix(config, sessions, site_id, fix, actor=actor, issue_key=issue_key, progress=progress)


def ignore_code_fix(config: config_mod.Config, site_id: str, code: str, reason: str) -> OverrideFix:
    """The edit ``ignore_code`` makes, checked; ``FixRefused`` if it cannot be made."""
    code, reason = _code_text(code), _reason(reason)
    catalog = site_files.catalog(config, site_id)
    key = overrides.code_key(catalog, code)
    if key in catalog.codes:
        raise FixRefused(f"{code} means {catalog.codes[key]!r}; a mapped code cannot also be ignored")
    if key in catalog.ignored_codes:
        raise FixRefused(f"{code} is already ignored at {site_id}")
    return OverrideFix(IGNORE_CODE, code, reason, f"{code} is no longer a protocol concept at {site_id}")


def ignore_issue(sessions: sessionmaker[Session], key: str, reason: str, *, actor: str) -> FixResult:
    """Mark one open issue as needing no fix; the reason is required and audited."""
    check_actor(actor)
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


def _code_text(code: str) -> str:
    code = code.strip()
    system, sep, value = code.partition("|")
    if not sep or not system.strip() or not value.strip():
        raise FixRefused(f'code {code!r} must be written "system|code"')
    return f"{system.strip()}|{value.strip()}"


def _reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if not reason:
        raise FixRefused("a reason is required: say why this needs no fix")
    return reason[:1000]
