"""Re-delivery on purpose: when ``[repository]`` names another trial repository.

The outbox sends each change once, and a sync queues only what changed, so
a site that moves from one repository to another (a file folder to the
trial's FHIR server, say) would otherwise send the new one nothing but
future changes.  The state records which repository took every delivery
(``adapter.store.repositories``); this module compares that with the
repository configured now.

- ``note`` (at the start of ``sync``, ``push``, ``db upgrade`` and the
  service, and before every delivery) makes the configured repository
  known.  The first time, deliveries made before the adapter recorded
  repositories are attributed to it.
- ``change`` (the same starts, and ``check``, which writes nothing) says
  how many current records the configured repository lacks while an earlier
  one got them, and names the command that fixes it.
- ``resend`` (``trial-adapter push --resend``) queues an upsert of each of
  those records and nothing else: no retraction (the new repository never
  had the withdrawn records), nothing it already holds or is about to get.
  Running it twice queues nothing the second time.

Items still pending when the repository changes are owed to *the* trial
repository, not to the one configured when they were queued: they go to
the repository configured when they are delivered.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from adapter import actors, errors
from adapter import config as config_mod
from adapter.protocol.records import RecordType
from adapter.sinks import identity
from adapter.store import repositories, state

RESEND = "trial-adapter push --resend"


@dataclass(frozen=True)
class Change:
    """The configured repository lacks current records that an earlier repository got."""

    current: identity.RepositoryIdentity
    owed: int
    by_site: dict[str, int]
    previous: list[str] = field(default_factory=list)  # other repositories, most recently used first

    def message(self, config_hint: str = "") -> str:
        went = f" went to {self.previous[0]}" if self.previous else " were delivered elsewhere"
        sites = ", ".join(f"{site} {count}" for site, count in sorted(self.by_site.items()))
        return (
            f"the trial repository changed: {self.owed} current record(s) ({sites}){went} but not to "
            f"{self.current}, and no sync re-sends unchanged records. Queue them for it with "
            f"`{RESEND}{config_hint}` (only what it lacks; running it twice sends nothing twice)"
        )


@dataclass(frozen=True)
class Resent:
    repository: identity.RepositoryIdentity
    queued: int
    by_type: dict[str, int]


def note(config: config_mod.Config, sessions: sessionmaker[Session]) -> int:
    """Make the configured repository known; return the earlier deliveries it took over (first time only)."""
    current = identity.of(config.repository)
    with sessions.begin() as session:
        return _note(session, current)


def _note(session: Session, current: identity.RepositoryIdentity) -> int:
    return repositories.note(session, current.fingerprint, current.kind, current.location)


def change(config: config_mod.Config, sessions: sessionmaker[Session]) -> Change | None:
    """What the configured repository lacks that another got; None when nothing. Writes nothing."""
    current = identity.of(config.repository)
    with sessions() as session:
        others = [
            f"{row.kind} repository {row.location}"
            for row in repositories.known(session)
            if row.fingerprint != current.fingerprint
        ]
        if not others:
            return None  # only ever this repository: nothing can be missing from it by a switch
        lacking = repositories.owed(session, current.fingerprint)
    if not lacking:
        return None
    return Change(current, len(lacking), dict(Counter(r.site for r in lacking)), others)


def resend(
    config: config_mod.Config,
    sessions: sessionmaker[Session],
    *,
    site: str | None = None,
    record_type: str | None = None,
    actor: str = "cli",
    dry_run: bool = False,
) -> Resent:
    """Queue every current record (of ``site``, of ``record_type``) the configured repository lacks.

    ``dry_run`` counts them and writes nothing.
    """
    actor = actors.check_actor(actor)
    if site is not None:
        config.site(site)
    if record_type is not None and record_type not in {t.value for t in RecordType}:
        known = ", ".join(t.value for t in RecordType)
        raise errors.ConfigError(f"--type {record_type}: not a record type; use one of {known}")
    current = identity.of(config.repository)
    if dry_run:
        with sessions() as session:
            lacking = repositories.owed(session, current.fingerprint, site=site, record_type=record_type)
        return Resent(current, len(lacking), dict(Counter(r.record_type for r in lacking)))
    with sessions.begin() as session:
        _note(session, current)
        lacking = repositories.owed(session, current.fingerprint, site=site, record_type=record_type)
        queued = repositories.enqueue(session, lacking)
        by_type = dict(Counter(r.record_type for r in lacking))
        if queued:
            state.audit(
                session,
                actor,
                "resend",
                str(current)[:400],
                queued=queued,
                by_type=by_type,
                site=site,
                record_type=record_type,
            )
    return Resent(current, queued, by_type)
