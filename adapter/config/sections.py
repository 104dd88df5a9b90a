"""The sections of the config file, one pydantic model per TOML table.

Site IT teams edit this file by hand, so every field carries a
``description`` that doubles as the fix in error messages
(``adapter.config.explain``).  The source and repository tables are not
here: each kind's settings live with the code that reads them
(``adapter.fhir.settings``, ``adapter.sinks.settings``), and ``Config``
only puts their unions into place.
"""

from __future__ import annotations

import ipaddress
import zoneinfo
from pathlib import Path
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from adapter import errors, paths
from adapter.fhir import settings as fhir_settings
from adapter.sinks import settings as sink_settings

StrictModel = ConfigDict(extra="forbid", frozen=True)


class StudyConfig(BaseModel):
    model_config = StrictModel

    id: str = Field("NCT06507514", description='the trial registry id, e.g. "NCT06507514"')
    mappings: Path = Field(
        default_factory=paths.default_mappings_dir,
        description="folder with concepts.toml, eligibility.toml and sites/<site>.toml (read only)",
    )
    overrides: Path | None = Field(
        None,
        description="folder the site owns for its own mapping fixes, <folder>/<site id>.toml, written by "
        "`trial-adapter map` and the console; default: mapping-overrides/ next to a SQLite state file, "
        "else next to this config file",
    )


class StoreConfig(BaseModel):
    model_config = StrictModel

    url: str = Field(
        "sqlite:///trial-adapter.db",
        description='SQLAlchemy URL of the state database, e.g. "sqlite:///state.db" or '
        '"postgresql+psycopg://adapter@dbhost/adapter"',
    )


class PrivacyConfig(BaseModel):
    model_config = StrictModel

    hmac_key_file: Path | None = Field(
        None, description="file holding the site secret used to hash source references (keep it 0600)"
    )
    hmac_key_env: str | None = Field(
        None, description="name of an environment variable holding the site secret"
    )
    date_shift_days: int = Field(
        0,
        ge=0,
        le=365,
        description="0 (default) sends true dates; N > 0 moves every outgoing date of a subject by the "
        "same whole number of days in -N..+N, fixed per subject by the site secret (0 to 365)",
    )


class SiteConfig(BaseModel):
    model_config = StrictModel

    id: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description='short site id of lowercase letters, digits and dashes, e.g. "site-berlin"',
    )
    timezone: str = Field(description='IANA timezone of the site, e.g. "Asia/Shanghai"')
    roster: Path = Field(
        description="CSV file with columns identifier_system,identifier_value,subject_id,enrolment_date"
    )
    source: fhir_settings.SourceConfig
    spo2_without_oxygen_record: Literal["unknown", "room_air"] = Field(
        "unknown",
        description="how screening reads an SpO2 with no oxygen flow or FiO2 charted on it or near it: "
        '"unknown" (the default: it cannot show eligibility) or "room_air" (the site\'s practice is to '
        "take screening SpO2 on room air unless oxygen is charted); a change is audited and re-derives "
        "the site's eligibility on the next sync",
    )

    @pydantic.field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f'unknown timezone {value!r}; use an IANA name like "Europe/Berlin"') from exc
        return value


class ScheduleConfig(BaseModel):
    model_config = StrictModel

    sync_interval_minutes: float = Field(
        60,
        ge=0.05,
        le=7 * 24 * 60,
        description="minutes between two syncs of a site (1 to 10080; fractions such as 0.5 are allowed)",
    )
    sync_cron: str | None = Field(
        None,
        description='a crontab line for site syncs instead of the interval, e.g. "*/30 6-22 * * *"',
    )
    sweep_cron: str = Field(
        "30 2 * * *",
        description='a crontab line for the full sweep that finds deleted resources, e.g. "30 2 * * *"',
    )
    delivery_interval_minutes: float = Field(
        5, ge=0.05, le=24 * 60, description="minutes between two outbox deliveries (also after each sync)"
    )
    timezone: str | None = Field(
        None,
        description='IANA timezone of the crontab lines, e.g. "Europe/Berlin" (default: the server\'s own)',
    )

    @pydantic.field_validator("sync_cron", "sweep_cron")
    @classmethod
    def _valid_crontab(cls, value: str | None) -> str | None:
        if value is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(value, timezone="UTC")
            except ValueError as exc:
                raise ValueError(f"{value!r} is not a crontab line ({exc})") from exc
        return value

    @pydantic.field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        return None if value is None else SiteConfig._known_timezone(value)


class SyncConfig(BaseModel):
    """How a pass commits, and treats what the source no longer lists (``adapter.sync.retraction_guard``)."""

    model_config = StrictModel

    max_retraction_share: float = Field(
        0.05,
        gt=0,
        le=1,
        description="largest share of a site's stored resources of one type that one pass may retract "
        "without a person's approval (0.05 = 5 %; a pass that would retract all of a type is always "
        "held back, a single resource never)",
    )
    resources_per_commit: int = Field(
        2000,
        ge=1,
        le=50000,
        description="resources a pass reads and maps before it commits them (1 to 50000; the source's "
        "pages are joined up to this many: larger loads a big site faster for a little more memory, "
        "and a crash reads at most this many again)",
    )


class ServiceConfig(BaseModel):
    model_config = StrictModel

    listen: str = Field(
        "127.0.0.1:9477",
        pattern=r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$",
        description='host:port of the health and metrics endpoint, e.g. "127.0.0.1:9477" '
        '("0.0.0.0:9477" in a container; port 0 picks a free one)',
    )
    stale_after_intervals: float = Field(
        3,
        ge=1,
        description="/readyz fails once a site's last successful sync is older than this many sync intervals",
    )
    stop_timeout_seconds: float = Field(
        60,
        gt=0,
        le=3600,
        description="how long SIGTERM waits for running syncs to finish their page before giving up",
    )


class ConsoleConfig(BaseModel):
    """The reconciliation console (``trial-adapter console``), see docs/console.md."""

    model_config = StrictModel

    bind: str = Field(
        "127.0.0.1",
        description="address the console listens on; keep 127.0.0.1 and reach it from other machines "
        "only through a TLS reverse proxy",
    )
    port: int = Field(8780, ge=1, le=65535, description="TCP port of the console (1 to 65535)")
    session_secret_file: Path = Field(
        Path("console-secret.key"),
        description="file holding the secret that signs console session cookies; created with mode "
        "0600 on first start if missing",
    )
    session_hours: int = Field(8, ge=1, le=168, description="hours a console login stays valid (1 to 168)")
    secure_cookies: bool = Field(
        False,
        description="true marks session cookies Secure even when the proxy in front does not send "
        "X-Forwarded-Proto; requests that arrive over HTTPS get Secure cookies anyway",
    )
    login_attempts: int = Field(
        5,
        ge=1,
        le=100,
        description="failed logins allowed per user name and per client address within 15 minutes "
        "before further attempts are refused for a while (a successful login clears the user "
        "name's count, never the address's)",
    )
    idle_minutes: int = Field(
        30,
        ge=1,
        le=24 * 60,
        description="minutes without a request after which a console session ends and the user logs "
        "in again (1 to 1440)",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description='IP addresses or networks of reverse proxies, e.g. ["127.0.0.1"] or '
        '["10.1.0.0/24"], whose X-Forwarded-For and X-Forwarded-Proto headers are believed; empty '
        "(the default) believes no one, so the login limit counts the real TCP peer",
    )

    @pydantic.field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=True)
            except ValueError as exc:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (write the proxy's address, e.g. "
                    '"127.0.0.1" or "10.1.0.0/24"; "*" is not allowed)'
                ) from exc
        return [entry.strip() for entry in value]


class Config(BaseModel):
    """The whole adapter configuration (see config.example.toml)."""

    model_config = StrictModel

    study: StudyConfig = StudyConfig()
    store: StoreConfig = StoreConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    sites: list[SiteConfig] = Field(min_length=1, description="one [[sites]] table per hospital site")
    repository: sink_settings.RepositoryConfig
    schedule: ScheduleConfig = ScheduleConfig()
    sync: SyncConfig = SyncConfig()
    service: ServiceConfig = ServiceConfig()
    console: ConsoleConfig = ConsoleConfig()
    source_file: Path | None = Field(None, exclude=True)

    @pydantic.model_validator(mode="after")
    def _unique_site_ids(self) -> Config:
        seen: set[str] = set()
        for site in self.sites:
            if site.id in seen:
                raise ValueError(f"site id {site.id!r} appears twice; every [[sites]] needs its own id")
            seen.add(site.id)
        return self

    def overrides_dir(self) -> Path:
        """The folder of the site-owned mapping fix files (``[study] overrides`` or its default)."""
        if self.study.overrides is not None:
            return self.study.overrides
        return paths.default_overrides_dir(self.store.url, Path.cwd())

    def site(self, site_id: str) -> SiteConfig:
        for site in self.sites:
            if site.id == site_id:
                return site
        known = ", ".join(s.id for s in self.sites)
        raise errors.ConfigError(f"no site {site_id!r} in the config; known sites: {known}")
