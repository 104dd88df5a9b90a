"""What ``trial-adapter check`` checks, in which order, and what it found.

Before a site's first sync (and after every change to its config, files or
servers) a person wants one answer: would a sync work, and if not, what to
fix.  ``run_checks`` loads everything a sync would load and tries every
server without changing any state: the state database, then per site its
mapping files, roster and secret, its stated practice, its mapping fix file
and its source, then the trial repository (the sink's read-only ``probe``)
and whether it lacks records an earlier repository got.

The answer is plain data, one ``Check`` per row, so a face only renders it:
the CLI as a table with exit codes, and the console's site page could show a
site's rows (``site_checks``) the same way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter import errors
from adapter.delivery import redelivery
from adapter.fhir import capability, ndjson
from adapter.fhir import settings as fhir_settings
from adapter.mapping import discovery, overrides
from adapter.sinks import factory
from adapter.store import db
from adapter.sync import SiteSetup, site_practice

SHARED = "-"  # the site column of what every site shares: the state database, the repository


class Outcome(enum.StrEnum):
    OK = "ok"
    WARN = "warning"  # works, but a person should look (or act: see ``Check.message``)
    FAIL = "failed"  # a sync would fail; ``Check.message`` says why and how to fix it


@dataclass(frozen=True)
class Check:
    """One thing checked and what was found."""

    site: str  # a site id, or SHARED
    item: str  # what was checked: "state database", "source ndjson", "behaviour: next links", ...
    outcome: Outcome
    detail: str = ""  # what was found, shown beside the outcome: "620 resources"
    # A failure: the problem and its fix, as one line naming the site and item.  A
    # warning with something to do: what to do.  Empty otherwise.
    message: str = ""
    exit_code: int = 0  # a failure's exit code (adapter.errors)
    label: str = ""  # a failure's own word where "failed" says too little ("not writable")

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAIL


@dataclass(frozen=True)
class CheckReport:
    checks: list[Check]

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.failed]

    @property
    def exit_code(self) -> int:
        """The first failure's exit code; 0 when nothing failed."""
        return self.failures[0].exit_code if self.failures else 0


def run_checks(config: config_mod.Config) -> CheckReport:
    """Every check, in order: the state database, each site, the trial repository."""
    checks: list[Check] = []
    sessions: sessionmaker[Session] | None = None
    try:
        sessions = db.open_store(config.store.url)
        checks.append(Check(SHARED, "state database", Outcome.OK))
    except errors.AdapterError as exc:
        checks.append(_failure(SHARED, "state database", f"state database: {exc}", exc.exit_code))
    for site in config.sites:
        checks += site_checks(config, site, sessions)
    checks += _repository_checks(config, sessions)
    return CheckReport(checks)


def site_checks(
    config: config_mod.Config, site: config_mod.SiteConfig, sessions: sessionmaker[Session] | None = None
) -> list[Check]:
    """A site's mapping files, roster and secret; its practice; its fix file; its source."""
    checks: list[Check] = []
    item = "mappings, rules, roster, secret"
    setup: SiteSetup | None = None
    try:
        setup = SiteSetup.load(config, site)
        detail = f"catalog {setup.catalog.version}, {len(setup.roster.entries)} on roster"
        checks.append(Check(site.id, item, Outcome.OK, detail))
    except errors.AdapterError as exc:
        checks.append(_failure(site.id, item, f"{site.id}: {exc}", exc.exit_code))
    checks.append(_practice_check(site, sessions))
    checks.append(_fix_file_check(config, site.id))
    if isinstance(site.source, fhir_settings.NdjsonSource):
        checks.append(_ndjson_check(site.id, site.source))
    else:
        checks += _server_checks(site.id, site.source, setup)
    return checks


def _repository_checks(config: config_mod.Config, sessions: sessionmaker[Session] | None) -> list[Check]:
    """The trial repository: reachable, credentials taken, writable (the sink's ``probe``, which
    writes nothing); and, with a state database, whether it lacks records an earlier repository got."""
    item = f"repository {config.repository.kind}"
    checks: list[Check] = []
    try:
        probe = factory.make_sink(config.repository).probe()
    except errors.AdapterError as exc:  # a token that cannot be read
        checks.append(_failure(SHARED, item, f"{item}: {exc}", exc.exit_code))
    else:
        if not probe.ok:
            checks.append(_failure(SHARED, item, f"{item}: {probe.detail}", errors.EXIT_DELIVERY))
        else:
            checks.append(Check(SHARED, item, Outcome.WARN if probe.warning else Outcome.OK, probe.detail))
    if sessions is not None:
        item = "records at the repository"
        change = redelivery.change(config, sessions)
        if change is None:
            checks.append(Check(SHARED, item, Outcome.OK))
        else:
            hint = f" -c {config.source_file}" if config.source_file else ""
            checks.append(
                Check(SHARED, item, Outcome.WARN, f"{change.owed} missing", message=change.message(hint))
            )
    return checks


def _practice_check(site: config_mod.SiteConfig, sessions: sessionmaker[Session] | None) -> Check:
    """How the site reads an SpO2 without an oxygen record, and whether the next sync applies a change.

    With a state database, a value the audit log does not hold yet is shown
    beside the one the stored records were derived with.
    """
    setting = site_practice.SPO2_SETTING
    current = site.spo2_without_oxygen_record
    detail = f"{setting} = {current}"
    if sessions is not None:
        with sessions() as session:
            audited = site_practice.last_audited(session, site.id, setting)
        if audited != current:
            detail += f"; was {audited}, the next sync re-derives the site's eligibility"
    return Check(site.id, "site practice", Outcome.OK, detail)


def _fix_file_check(config: config_mod.Config, site_id: str) -> Check:
    """Where the site's own mapping fixes live, and whether a fix could be stored there."""
    item = "mapping fix file"
    path = overrides.path_for(config.overrides_dir(), site_id)
    verdict = overrides.writability(path)
    if not verdict.writable:
        message = f"{site_id}: {item} {path}: {verdict.problem}"
        return _failure(site_id, item, message, errors.EXIT_CONFIG, label="not writable")
    entries = sum(len(values) for values in overrides.read_override(path).values()) if verdict.exists else 0
    state = f"{entries} fix(es)" if verdict.exists else "created on the first fix"
    return Check(site_id, item, Outcome.OK, f"{path}, writable; {state}")


def _ndjson_check(site_id: str, source: fhir_settings.NdjsonSource) -> Check:
    item = f"source {source.kind}"
    try:
        lines = ndjson.count_lines(source.path)
    except errors.AdapterError as exc:
        return _failure(site_id, item, f"{site_id}: {exc}", exc.exit_code)
    return Check(site_id, item, Outcome.OK, f"{lines} resources")


def _server_checks(
    site_id: str, server: fhir_settings.FhirServerSettings, setup: SiteSetup | None
) -> list[Check]:
    """A FHIR-server source's rows (``adapter.fhir.capability``).

    With the site's setup (roster and catalog loaded), a ``fhir-rest`` site also
    gets the behaviour rows ("behaviour: ...", ``adapter.fhir.probe``); without
    it they are left out, and the setup's own row says why.
    """
    roster = setup.roster if setup is not None else None
    wanted = discovery.source_wanted(setup.catalog) if setup is not None else None
    return [
        Check(site_id, row.item, Outcome.WARN if row.warning else Outcome.OK, row.detail)
        if row.ok
        else _failure(site_id, row.item, f"{site_id}: {row.item}: {row.detail}", errors.EXIT_SOURCE)
        for row in capability.check_server(site_id, server, roster=roster, wanted=wanted)
    ]


def _failure(site: str, item: str, message: str, exit_code: int, *, label: str = "") -> Check:
    return Check(site, item, Outcome.FAIL, message=message, exit_code=exit_code, label=label)
