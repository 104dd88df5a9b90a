"""The ``[sites.source]`` tables: an NDJSON folder, or a FHIR server's URL, auth, TLS, paging, retries.

These are the source kinds ``ndjson`` (a folder of files), ``fhir-rest``
(search API) and ``fhir-bulk`` (Bulk Data ``$export``), joined in the
``SourceConfig`` union that ``adapter.config`` puts into the config.  Site IT
teams write them by hand, so every field's ``description`` doubles as the fix
shown when it is wrong.  The ``tls`` table and the ``bearer`` / ``none`` auth
kinds are the ones a network repository has too (``adapter.net.settings``).

Secrets are never values in this file, only the *name* of an environment
variable or the *path* of a file that holds them: config files travel into
backups, tickets and screen shares (cumulus-fhir-support
``client.create_for_cli`` makes the same choice for command-line flags).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pydantic
from pydantic import BaseModel, Field

from adapter.fhir import batching, profiles
from adapter.net import settings as net_settings
from adapter.net.settings import URL_PATTERN, BearerAuth, NoAuth, Resolve, Strict, TlsSettings

# Size caps on what a site sends (every source kind has max_resource_bytes).  1 MiB
# is twenty times a large real resource (an Observation with a narrative is some
# 5-50 KB; the demo's are under 1 KB) and far below what makes the console or the
# state database suffer (one 50 MB valueString made a 52 MB worklist page).
MAX_RESOURCE_BYTES = 1 << 20
MAX_RESPONSE_BYTES = 64 << 20
MaxResourceBytes = Annotated[
    int,
    Field(
        ge=1024,
        le=1 << 30,
        description="largest resource (its JSON; for an NDJSON file, its line) the adapter reads, in "
        "bytes, 1024 to 1073741824; a larger one becomes an invalid_resource issue naming it and its "
        "size, without its content (default 1048576, 1 MiB)",
    ),
]


class NdjsonSource(BaseModel):
    """A folder of Bulk-Data-shaped NDJSON files (``adapter.fhir.ndjson``), e.g. the demo site."""

    model_config = Strict

    kind: Literal["ndjson"] = Field(description='"ndjson": a folder of <ResourceType>.ndjson files')
    path: Path = Field(description="folder holding Patient.ndjson, Observation.ndjson, ... for this site")
    max_resource_bytes: MaxResourceBytes = MAX_RESOURCE_BYTES

    def resolved(self, resolve: Resolve, study_mappings: Path) -> NdjsonSource:
        del study_mappings  # a folder is read whole
        return self.model_copy(update={"path": resolve(self.path)})


class BasicAuth(BaseModel):
    model_config = Strict

    kind: Literal["basic"] = Field(description='"basic": HTTP basic auth with a user name and password')
    username: str = Field(min_length=1, description="the HTTP basic user name the site gave the adapter")
    password_env: str | None = Field(
        None, description="name of the environment variable holding the HTTP basic password"
    )
    password_file: Path | None = Field(
        None, description="file holding the HTTP basic password on its first line (keep it 0600)"
    )

    @pydantic.model_validator(mode="after")
    def _one_secret(self) -> BasicAuth:
        net_settings.exactly_one(self.password_env, self.password_file, "password_env", "password_file")
        return self


class SmartBackendAuth(BaseModel):
    """SMART Backend Services: https://hl7.org/fhir/smart-app-launch/backend-services.html"""

    model_config = Strict

    kind: Literal["smart-backend"] = Field(
        description='"smart-backend": SMART Backend Services (client credentials with a signed JWT)'
    )
    client_id: str = Field(min_length=1, description="the client_id the site registered for the adapter")
    key_file: Path = Field(
        description="the adapter's private key: a JWKS / JWK JSON file or a PEM file (keep it 0600); "
        "the site registers the matching public key"
    )
    kid: str | None = Field(
        None,
        description="key id of the signing key, as registered at the site; default: the key's own kid "
        "in a JWKS file, else the RFC 7638 thumbprint of the key",
    )
    alg: Literal["RS384", "ES384"] | None = Field(
        None, description='"RS384" (RSA key) or "ES384" (EC P-384 key); default: from the key type'
    )
    token_url: str | None = Field(
        None,
        pattern=URL_PATTERN,
        description="the OAuth token endpoint; default: token_endpoint from "
        "<base_url>/.well-known/smart-configuration",
    )
    scope: str | None = Field(
        None,
        description='scopes to request, e.g. "system/Observation.rs system/Patient.rs"; default: read '
        "access to the resource types the adapter reads (SMART v2 or v1 syntax, as the server offers)",
    )


AuthConfig = Annotated[NoAuth | BearerAuth | BasicAuth | SmartBackendAuth, Field(discriminator="kind")]


class RetrySettings(BaseModel):
    model_config = Strict

    attempts: int = Field(5, ge=1, le=20, description="tries per request before giving up (1 to 20)")
    backoff_seconds: float = Field(
        1.0, gt=0, le=60, description="wait before the first retry, doubled each retry (seconds)"
    )
    max_backoff_seconds: float = Field(
        60.0, gt=0, le=3600, description="longest wait between two tries (seconds)"
    )
    retry_after_cap_seconds: float = Field(
        120.0,
        ge=0,
        le=3600,
        description="longest wait the adapter grants a server's Retry-After header (seconds)",
    )
    max_wait_seconds: float = Field(
        600.0, ge=0, le=6 * 3600, description="total waiting allowed for one request (seconds)"
    )


class FhirServerSettings(BaseModel):
    """What every FHIR-server source needs: where it is and how to talk to it."""

    model_config = Strict

    base_url: str = Field(
        pattern=URL_PATTERN,
        description='the FHIR R4 base URL, e.g. "https://ehr.example.org/fhir/r4" (no query string)',
    )
    auth: AuthConfig = Field(
        NoAuth(kind="none"),
        description='a table with kind = "smart-backend", "bearer", "basic" or "none"',
    )
    tls: TlsSettings = Field(TlsSettings(), description="TLS settings: verify, ca_bundle, client_cert")
    timeout_seconds: float = Field(
        60.0, gt=0, le=900, description="seconds to wait for the server to answer one request"
    )
    retry: RetrySettings = Field(RetrySettings(), description="retry and backoff settings")
    max_resource_bytes: MaxResourceBytes = MAX_RESOURCE_BYTES
    max_response_bytes: int = Field(
        MAX_RESPONSE_BYTES,
        ge=64 * 1024,
        le=1 << 32,
        description="largest answer the adapter reads from the server (a page of search results, a "
        "manifest), in bytes, 65536 to 4294967296; a larger one stops the pass with an error naming "
        "the URL (default 67108864, 64 MiB)",
    )

    @pydantic.model_validator(mode="after")
    def _response_holds_a_resource(self) -> FhirServerSettings:
        if self.max_response_bytes < self.max_resource_bytes:
            raise ValueError(
                "max_response_bytes is smaller than max_resource_bytes; an answer must be able to hold "
                "one resource of the largest size"
            )
        return self

    def _resolved_paths(self, resolve: Resolve) -> dict[str, object]:
        update: dict[str, object] = {"tls": self.tls.resolved(resolve)}
        auth = self.auth
        if isinstance(auth, BearerAuth) and auth.token_file is not None:
            update["auth"] = auth.model_copy(update={"token_file": resolve(auth.token_file)})
        elif isinstance(auth, BasicAuth) and auth.password_file is not None:
            update["auth"] = auth.model_copy(update={"password_file": resolve(auth.password_file)})
        elif isinstance(auth, SmartBackendAuth):
            update["auth"] = auth.model_copy(update={"key_file": resolve(auth.key_file)})
        return update


class RestSource(FhirServerSettings):
    """The FHIR search API (docs/design.md §2): roster patients in batches, paged, incremental."""

    kind: Literal["fhir-rest"] = Field(description='"fhir-rest": the site\'s FHIR R4 search API')
    patient_batch_size: int = Field(
        100,
        ge=1,
        le=1000,
        description="most patients per search (patient=a,b,c), 1 to 1000 (default 100); a search holds "
        "fewer when its URL would pass max_url_bytes; 1 for a server without OR-lists",
    )
    max_url_bytes: int = Field(
        batching.DEFAULT_MAX_URL_BYTES,
        ge=512,
        le=65536,
        description="longest search URL the adapter sends, in bytes, 512 to 65536 (default 2000): "
        "patients are packed into a search up to it; lower it if the server or its gateway refuses long "
        "URLs (414), raise it (e.g. 8000) to send fewer searches to a server that takes them",
    )
    page_size: int = Field(100, ge=1, le=1000, description="resources per page (_count), 1 to 1000")
    codes_per_query: int = Field(
        100,
        ge=1,
        le=1000,
        description="Observation codes per search; longer code lists are split into several searches "
        "so URLs stay under the server's limit",
    )
    observation_category: tuple[str, ...] = Field(
        (),
        description='Observation categories to ask for, e.g. ["laboratory", "vital-signs"] or '
        '"system|code" tokens; empty: any category',
    )
    strict_search: bool = Field(
        True,
        description="true (the default) asks the server to refuse search parameters it does not support "
        "(Prefer: handling=strict) instead of ignoring them; false only for servers that reject the header",
    )
    server_profile: profiles.ServerProfile = Field(
        "generic",
        description='the EHR\'s FHIR server: "generic" (the default: only what FHIR R4 promises), "epic", '
        '"oracle-health" or "hapi"; sets the vendor\'s known defaults (docs/sources.md, "Server '
        'profiles") for every setting this table does not give itself',
    )
    incremental: bool = Field(
        True,
        description="true (the default): passes between full sweeps ask only for what changed "
        "(_lastUpdated); false for a server that ignores _lastUpdated (trial-adapter check says so): every "
        "pass reads everything (consider fhir-bulk with _since instead)",
    )
    deletions_from_history: bool = Field(
        True,
        description="true (the default): an incremental pass also reads the type's history since the "
        "last pass ([base]/[type]/_history?_since=, where the server declares history-type) and retires "
        "what was deleted, within one sync interval instead of at the next full sweep; false never asks "
        "for history (a server whose history is slow or too long): deletions wait for the full sweep",
    )
    next_links: Literal["repair", "refuse"] = Field(
        "repair",
        description="what to do with a next link that drops the search's parameters (patient, code, "
        '...): "repair" (the default) puts them back and warns; "refuse" stops the pass with a server '
        "fault",
    )

    @pydantic.model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: object) -> object:
        """A profile's defaults fill the keys the site did not write; the site's own keys win."""
        if not isinstance(data, dict):
            return data
        profile = data.get("server_profile", "generic")
        if not isinstance(profile, str):
            return data
        return {**profiles.defaults(profile), **data}

    def resolved(self, resolve: Resolve, study_mappings: Path) -> RestSource:
        del study_mappings  # Observation searches are filtered by the catalog the sync maps with
        return self.model_copy(update=self._resolved_paths(resolve))


class BulkSource(FhirServerSettings):
    """Bulk Data export: https://hl7.org/fhir/uv/bulkdata/export.html"""

    kind: Literal["fhir-bulk"] = Field(description='"fhir-bulk": the site\'s FHIR Bulk Data $export')
    group_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9\-.]{1,64}$",
        description="id of the site's Group of trial patients (Group/<id>/$export); "
        "without it Patient/$export is used",
    )
    work_dir: Path = Field(
        description="folder the export is downloaded into (and the export status kept, for resuming)"
    )
    poll_cap_seconds: float = Field(
        300.0,
        ge=1,
        le=3600,
        description="longest wait between two status polls, whatever Retry-After says (seconds)",
    )
    max_export_hours: float = Field(
        24.0, gt=0, le=24 * 30, description="give up waiting for the server's export after this many hours"
    )

    def resolved(self, resolve: Resolve, study_mappings: Path) -> BulkSource:
        del study_mappings  # a Bulk export is not filtered by code
        update = self._resolved_paths(resolve)
        update["work_dir"] = resolve(self.work_dir)
        return self.model_copy(update=update)


SourceConfig = Annotated[NdjsonSource | RestSource | BulkSource, Field(discriminator="kind")]


# Discriminator tags of the models above, for adapter.config's error messages.
TAGGED_MODELS: dict[str, type[BaseModel]] = {
    "ndjson": NdjsonSource,
    "fhir-rest": RestSource,
    "fhir-bulk": BulkSource,
    **net_settings.TAGGED_MODELS,
    "basic": BasicAuth,
    "smart-backend": SmartBackendAuth,
}
