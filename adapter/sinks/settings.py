"""The ``[repository]`` tables: the ``file`` folder and the network sinks ``http``, ``fhir``, ``redcap``.

They are joined in the ``RepositoryConfig`` union that ``adapter.config``
puts into the config.  Site IT teams write them by hand, so every field's
``description`` doubles as the fix shown when it is wrong.  Credentials are
never values here, only the *name* of an environment variable or the *path*
of a file (the same ``[repository.auth]`` and ``[repository.tls]`` tables as
a FHIR source has, ``adapter.net.settings``), because config files travel
into backups and tickets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Self

import pydantic
from pydantic import BaseModel, Field

from adapter.net.settings import URL_PATTERN, BearerAuth, NoAuth, Resolve, Strict, TlsSettings
from adapter.protocol.records import RecordType

SinkAuth = Annotated[NoAuth | BearerAuth, Field(discriminator="kind")]


class FileRepository(BaseModel):
    model_config = Strict

    kind: Literal["file"] = Field(description='"file": NDJSON files per record type plus a manifest')
    path: Path = Field(description="folder the trial-repository files are written to")

    def resolved(self, resolve: Resolve) -> FileRepository:
        """The folder, resolved against the config file's folder."""
        return self.model_copy(update={"path": resolve(self.path)})


class NetworkSinkSettings(BaseModel):
    """Where a network repository is and how to reach it over TLS."""

    model_config = Strict

    url: str = Field(
        pattern=URL_PATTERN,
        description='the repository\'s base URL, e.g. "https://trials.example.org/api" (no query string)',
    )
    tls: TlsSettings = Field(
        TlsSettings(),
        description="TLS settings: verify, ca_bundle, and client_cert / client_key for mutual TLS",
    )
    timeout_seconds: float = Field(
        60.0, gt=0, le=900, description="seconds to wait for the repository to answer one request"
    )

    def resolved(self, resolve: Resolve) -> Self:
        """Relative certificate paths, resolved against the config file's folder."""
        return self.model_copy(update={"tls": self.tls.resolved(resolve)})


class BearerSinkSettings(NetworkSinkSettings):
    """A network repository that takes a bearer token, mutual TLS, or both."""

    auth: SinkAuth = Field(
        NoAuth(kind="none"),
        description='a table with kind = "bearer" (token_env or token_file) or "none" (e.g. mutual TLS only)',
    )

    def resolved(self, resolve: Resolve) -> Self:
        base = super().resolved(resolve)
        if isinstance(self.auth, BearerAuth) and self.auth.token_file is not None:
            auth = self.auth.model_copy(update={"token_file": resolve(self.auth.token_file)})
            return base.model_copy(update={"auth": auth})
        return base


class HttpRepository(BearerSinkSettings):
    """A REST endpoint that takes one JSON record per URL."""

    kind: Literal["http"] = Field(
        description='"http": PUT each record as JSON to <url>/<record type>/<record id>, DELETE to retract'
    )


class FhirRepository(BearerSinkSettings):
    """A central FHIR R4 server, written with transaction Bundles (docs/fhir-sink.md)."""

    kind: Literal["fhir"] = Field(
        description='"fhir": a central FHIR R4 server, written with transaction Bundles'
    )
    system_base: str = Field(
        "urn:trial-adapter",
        pattern=r"^(urn:[A-Za-z0-9][A-Za-z0-9-]*|https?://[^\s?#]+)$",
        description="prefix of the identifier, code and extension systems the sink writes, e.g. the "
        'repository\'s own "https://trials.example.org/fhir" (no trailing slash)',
    )
    max_bundle_entries: int = Field(
        500,
        ge=10,
        le=10000,
        description="most entries in one transaction Bundle (10 to 10000); a subject's changes always "
        "travel in one Bundle",
    )


_TEMPLATE_FIELD = re.compile(r"\{([A-Za-z0-9_.]+)\}")


class RedcapRecordMap(BaseModel):
    """How one record type becomes a row of a REDCap flat import."""

    model_config = Strict

    fields: dict[str, str] = Field(
        default_factory=dict,
        description='record field -> REDCap field name, e.g. { start = "cyc_start" }; nested values by '
        'dotted path, e.g. "criteria.lvef.status"',
    )
    event: str | None = Field(
        None,
        description='unique event name, for longitudinal projects only, e.g. "baseline_arm_1"; may '
        'name record fields in braces, e.g. "{phase}_arm_1"',
    )
    instrument: str | None = Field(
        None,
        description="repeating instrument (form name) for record types a subject has many of, "
        'e.g. "blinatumomab_cycle" for TreatmentCycle',
    )
    instance: str | None = Field(
        None,
        description="repeat instance of a repeating instrument, as record fields in braces that give a "
        'whole number >= 1, e.g. "{number}"',
    )
    skip: bool = Field(
        False,
        description="true: records of this type are not imported into REDCap (acknowledged unsent); "
        "every record type must either have fields or skip = true",
    )

    @pydantic.model_validator(mode="after")
    def _complete(self) -> RedcapRecordMap:
        if self.skip:
            return self
        if not self.fields:
            raise ValueError("set fields = { record field = REDCap field, ... } or skip = true")
        if (self.instrument is None) != (self.instance is None):
            raise ValueError('a repeating instrument needs both instrument and instance (e.g. "{number}")')
        return self


class RedcapRepository(NetworkSinkSettings):
    """A REDCap project, written through its API record import."""

    kind: Literal["redcap"] = Field(
        description='"redcap": a REDCap project, written through the API record import'
    )
    url: str = Field(
        pattern=URL_PATTERN,
        description='the REDCap API endpoint, e.g. "https://redcap.example.org/api/"',
    )
    token_env: str | None = Field(
        None, description="name of the environment variable holding the project's REDCap API token"
    )
    token_file: Path | None = Field(
        None, description="file holding the project's REDCap API token on its first line (keep it 0600)"
    )
    overwrite_behavior: Literal["normal", "overwrite"] = Field(
        "overwrite",
        description='"overwrite" (default): a value that became empty is blanked in REDCap too; '
        '"normal": empty values never replace stored ones (a withdrawn value would stay)',
    )
    record_id_field: str = Field(
        "record_id", description="the project's record id field (its first field); it gets the subject id"
    )
    records: dict[str, RedcapRecordMap] = Field(
        description="one [repository.records.<RecordType>] table per record type, e.g. "
        "[repository.records.TreatmentCycle]; record types: " + ", ".join(t.value for t in RecordType)
    )

    @pydantic.model_validator(mode="after")
    def _one_token_and_known_types(self) -> RedcapRepository:
        if (self.token_env is None) == (self.token_file is None):
            raise ValueError("set exactly one of token_env (environment variable) or token_file (file)")
        unknown = sorted(set(self.records) - {t.value for t in RecordType})
        if unknown:
            known = ", ".join(t.value for t in RecordType)
            raise ValueError(f"records: unknown record type(s) {', '.join(unknown)}; use {known}")
        missing = sorted({t.value for t in RecordType} - set(self.records))
        if missing:
            raise ValueError(
                f"records: no table for {', '.join(missing)}; map each record type or give it skip = true"
            )
        return self

    def resolved(self, resolve: Resolve) -> Self:
        base = super().resolved(resolve)
        if self.token_file is None:
            return base
        return base.model_copy(update={"token_file": resolve(self.token_file)})


def template_fields(template: str) -> list[str]:
    """The record fields a ``{field}`` template names (event names, repeat instances)."""
    return _TEMPLATE_FIELD.findall(template)


RepositoryConfig = Annotated[
    FileRepository | HttpRepository | FhirRepository | RedcapRepository, Field(discriminator="kind")
]


# Discriminator tags of the models above, for adapter.config's error messages.
TAGGED_MODELS: dict[str, type[BaseModel]] = {
    "file": FileRepository,
    "http": HttpRepository,
    "fhir": FhirRepository,
    "redcap": RedcapRepository,
}
