"""The config tables every network connection has: ``tls``, and ``auth`` by bearer token or none.

A FHIR source (``[sites.source.tls]``, ``[sites.source.auth]``) and a
network repository (``[repository.tls]``, ``[repository.auth]``) write these
tables the same way, so they are defined once, here; ``adapter.fhir.settings``
adds the auth schemes only a source has (basic, SMART Backend Services).

Secrets are never values in these tables, only the *name* of an environment
variable or the *path* of a file that holds them: config files travel into
backups, tickets and screen shares.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

Strict = ConfigDict(extra="forbid", frozen=True)
Resolve = Callable[[Path], Path]

URL_PATTERN = r"^https?://[^\s?#]+$"


class NoAuth(BaseModel):
    model_config = Strict

    kind: Literal["none"] = Field(description='"none": the server needs no credentials (test servers only)')


class BearerAuth(BaseModel):
    model_config = Strict

    kind: Literal["bearer"] = Field(description='"bearer": a static access token issued by the site')
    token_env: str | None = Field(
        None, description="name of the environment variable holding the bearer token"
    )
    token_file: Path | None = Field(
        None, description="file holding the bearer token on its first line (keep it 0600)"
    )

    @pydantic.model_validator(mode="after")
    def _one_secret(self) -> BearerAuth:
        exactly_one(self.token_env, self.token_file, "token_env", "token_file")
        return self


class TlsSettings(BaseModel):
    """How the server's certificate is checked, and the client certificate for mutual TLS.

    ``ca_bundle`` with ``verify = false`` is refused: the bundle only serves to
    check certificates, so the pair says both "check against this CA" and
    "check nothing".  Guessing either way is wrong for someone: ignoring the
    bundle turns checks off behind the back of whoever added it; honouring
    it breaks a test server that someone meant to reach unchecked.
    """

    model_config = Strict

    verify: bool = Field(
        True,
        description="true (the default) to check the server's TLS certificate; false only for test "
        "servers, and it is logged as a warning on every start",
    )
    ca_bundle: Path | None = Field(
        None,
        description="PEM file of the CA certificates to trust, for servers with their own CA (not with "
        "verify = false)",
    )
    client_cert: Path | None = Field(
        None, description="PEM client certificate for mutual TLS (with client_key, or a combined PEM)"
    )
    client_key: Path | None = Field(None, description="PEM private key of the mutual-TLS client certificate")

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> TlsSettings:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key is set but client_cert is not; mutual TLS needs both")
        if self.ca_bundle is not None and not self.verify:
            raise ValueError(
                "ca_bundle is set but verify = false, which checks no certificate at all; remove "
                "verify = false to check the server against ca_bundle, or remove ca_bundle (test "
                "servers only)"
            )
        return self

    def resolved(self, resolve: Resolve) -> TlsSettings:
        return self.model_copy(
            update={
                name: resolve(value)
                for name in ("ca_bundle", "client_cert", "client_key")
                if (value := getattr(self, name)) is not None
            }
        )

    @property
    def session_verify(self) -> bool | str:
        """What ``requests`` takes as ``verify``: the CA bundle's path, else true or false."""
        return str(self.ca_bundle) if self.ca_bundle is not None else self.verify

    @property
    def session_cert(self) -> str | tuple[str, str] | None:
        """What ``requests`` takes as ``cert``: the certificate, with its key file if separate."""
        if self.client_cert is None:
            return None
        return (str(self.client_cert), str(self.client_key)) if self.client_key else str(self.client_cert)


def exactly_one(env: str | None, file: Path | None, env_name: str, file_name: str) -> None:
    """A secret comes from an environment variable or a file, never both, never neither."""
    if (env is None) == (file is None):
        raise ValueError(f"set exactly one of {env_name} (environment variable) or {file_name} (file)")


# Discriminator tags of the models above, for adapter.config's error messages.
TAGGED_MODELS: dict[str, type[BaseModel]] = {"none": NoAuth, "bearer": BearerAuth}
