"""The ways a site lets the adapter in: SMART Backend Services, bearer token, HTTP basic.

Mutual TLS is not here: it is a property of the connection, set on the
session by ``adapter.fhir.connect``, and combines with any scheme below.

SMART Backend Services (https://hl7.org/fhir/smart-app-launch/backend-services.html)
is the scheme sites should use: the adapter proves who it is with a short-lived
JWT signed by its private key (``private_key_jwt``, RS384 or ES384), gets an
access token with the client-credentials grant, keeps it until shortly before
it expires, and fetches a new one once when the server answers 401.

Secrets come from environment variables or files named in the config
(``adapter.net.credentials``) and are never logged or put into messages.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from adapter import errors, secret_files
from adapter.fhir import http
from adapter.fhir import settings as fhir_settings
from adapter.net import credentials, messages
from adapter.net.settings import BearerAuth

log = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# SMART: "exp ... no more than five minutes in the future".  Four minutes leave
# room for a server clock that runs behind ours.
ASSERTION_LIFETIME = 240
# Renew a cached access token this long before it expires, so a page request
# never leaves with a token that dies in flight.
EXPIRY_MARGIN = 60
AUTH_TABLE = "sites.source.auth"  # where a missing or unreadable secret is configured
DEFAULT_TOKEN_LIFETIME = 300  # when the server omits expires_in (RFC 6749 §5.1 makes it optional)
# Medication: administrations that name their drug by reference are resolved
# with Medication searches (adapter.fhir.medications); without the scope a
# strict EHR answers those with 403 and the pass fails.
READ_TYPES = ("Patient", "Observation", "MedicationAdministration", "Medication", "Procedure", "Group")

Clock = Callable[[], float]


class StaticBearer:
    """A token the site issued once; a 401 cannot be fixed by the adapter."""

    def __init__(self, token: str) -> None:
        self._header = {"Authorization": f"Bearer {token}"}

    def headers(self, client: http.FhirClient) -> dict[str, str]:
        return dict(self._header)

    def refresh(self, client: http.FhirClient) -> bool:
        return False


class Basic:
    """HTTP basic auth (RFC 7617), for sites behind a gateway that accepts nothing better."""

    def __init__(self, username: str, password: str) -> None:
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._header = {"Authorization": f"Basic {token}"}

    def headers(self, client: http.FhirClient) -> dict[str, str]:
        return dict(self._header)

    def refresh(self, client: http.FhirClient) -> bool:
        return False


@dataclass(frozen=True)
class SigningKey:
    """The adapter's private key, the JWS algorithm it signs with and the key id the site knows."""

    key: Any  # a cryptography private key object
    alg: str
    kid: str


@dataclass
class AccessToken:
    value: str
    expires_at: float  # clock seconds


class SmartBackendServices:
    """Client-credentials grant with a ``private_key_jwt`` assertion.

    https://hl7.org/fhir/smart-app-launch/backend-services.html#obtaining-an-access-token
    """

    def __init__(
        self,
        client_id: str,
        key: SigningKey,
        *,
        token_url: str | None = None,
        scope: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.client_id = client_id
        self.key = key
        self._token_url = token_url
        self._scope = scope
        self._clock = clock
        self._token: AccessToken | None = None
        self._capabilities: Sequence[str] = ()

    # Authorizer ---------------------------------------------------------

    def headers(self, client: http.FhirClient) -> dict[str, str]:
        token = self._token
        if token is None or token.expires_at - EXPIRY_MARGIN <= self._clock():
            token = self._fetch(client)
        return {"Authorization": f"Bearer {token.value}"}

    def refresh(self, client: http.FhirClient) -> bool:
        self._token = None
        self._fetch(client)
        return True

    # SMART --------------------------------------------------------------

    def token_url(self, client: http.FhirClient) -> str:
        """The token endpoint: configured, else from ``.well-known/smart-configuration``.

        https://hl7.org/fhir/smart-app-launch/conformance.html#using-well-known
        """
        if self._token_url is None:
            config = smart_configuration(client)
            endpoint = config.get("token_endpoint")
            if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
                raise errors.AuthError(
                    f"site {client.site}: {client.base_url}/.well-known/smart-configuration names no "
                    "token_endpoint; set [sites.source.auth] token_url"
                )
            capabilities = config.get("capabilities")
            self._capabilities = [c for c in capabilities if isinstance(c, str)] if capabilities else ()
            self._token_url = endpoint
        return self._token_url

    def scope(self) -> str:
        """The configured scope, else read access in SMART v2 syntax (v1 if the server offers only v1).

        https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html
        """
        if self._scope:
            return self._scope
        v1_only = "permission-v1" in self._capabilities and "permission-v2" not in self._capabilities
        return " ".join(f"system/{t}.{'read' if v1_only else 'rs'}" for t in READ_TYPES)

    def assertion(self, token_url: str) -> str:
        """The signed JWT that authenticates the client (the ``client_assertion``).

        Header: ``alg`` RS384 or ES384, ``kid``, ``typ`` JWT.  Claims: ``iss`` and
        ``sub`` the client id, ``aud`` the token URL, ``exp`` at most five minutes
        ahead, ``jti`` unique per assertion (servers reject replays).
        https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html#authenticating-to-the-token-endpoint
        """
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "exp": now + ASSERTION_LIFETIME,
            "jti": secrets.token_urlsafe(24),
        }
        header = {"kid": self.key.kid, "typ": "JWT"}
        return jwt.encode(claims, self.key.key, algorithm=self.key.alg, headers=header)

    def _fetch(self, client: http.FhirClient) -> AccessToken:
        token_url = self.token_url(client)

        def form() -> dict[str, str]:  # a fresh assertion (new jti) for every try
            return {
                "grant_type": "client_credentials",
                "scope": self.scope(),
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(token_url),
            }

        started = self._clock()
        try:
            response = client.request(
                "POST",
                token_url,
                data=form,
                headers={"Accept": "application/json"},
                authenticate=False,
            )
        except errors.FatalNetworkError as exc:
            raise errors.AuthError(
                f"{exc}; the token endpoint refused the adapter: check client_id, that the site "
                f"registered the public key with kid {self.key.kid!r}, and the scopes"
            ) from None
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        access = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access:
            what = "a JSON object" if isinstance(body, dict) else "no JSON object"
            raise errors.AuthError(
                f"site {client.site}: POST {messages.redact_url(token_url)}: the token endpoint answered "
                f"{response.status_code} with {what} but without an access_token; the next pass tries "
                "again (if it keeps happening, check token_url)"
            )
        lifetime = body.get("expires_in") if isinstance(body, dict) else None
        seconds = lifetime if isinstance(lifetime, int | float) and lifetime > 0 else DEFAULT_TOKEN_LIFETIME
        self._token = AccessToken(access, started + float(seconds))
        log.info("access token obtained", extra={"site": client.site, "expires_in": seconds})
        return self._token


def smart_configuration(client: http.FhirClient) -> dict[str, Any]:
    """``<base>/.well-known/smart-configuration``, the SMART discovery document."""
    body, _ = client.get_json(
        ".well-known/smart-configuration", headers={"Accept": "application/json"}, authenticate=False
    )
    return body


# ------------------------------------------------------------------ keys


def load_signing_key(path: Path, kid: str | None = None, alg: str | None = None) -> SigningKey:
    """The adapter's private key from a JWKS / JWK JSON file or a PEM file.

    SMART requires RS384 and ES384 support from servers, so those are the two
    algorithms the adapter signs with (RSA key → RS384, EC P-384 key → ES384).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise errors.ConfigError(
            f"{path}: cannot read the SMART key file ({exc.strerror or exc}); "
            "check [sites.source.auth] key_file"
        ) from None
    secret_files.warn_if_exposed(path, "SMART private key")
    if data.lstrip().startswith(b"{"):
        return _from_jwk_json(path, data, kid, alg)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise errors.ConfigError(
            f"{path}: not a JWKS/JWK JSON file or an unencrypted PEM private key"
        ) from None
    return _signing_key(path, key, kid, alg)


def _from_jwk_json(path: Path, data: bytes, kid: str | None, alg: str | None) -> SigningKey:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise errors.ConfigError(f"{path}: not valid JSON") from None
    candidates = document.get("keys", [document]) if isinstance(document, dict) else []
    private = [k for k in candidates if isinstance(k, dict) and "d" in k and k.get("kty") in ("RSA", "EC")]
    if kid is not None:
        private = [k for k in private if k.get("kid") == kid]
    if alg is not None:
        private = [k for k in private if k.get("alg") in (None, alg)]
    if not private:
        wanted = f" with kid {kid!r}" if kid else ""
        raise errors.ConfigError(f"{path}: no RSA or EC private key{wanted} in this JWKS file")
    chosen = private[0]
    try:
        key = jwt.PyJWK(chosen).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError) as exc:
        raise errors.ConfigError(f"{path}: unusable key ({exc.__class__.__name__})") from None
    return _signing_key(path, key, kid or chosen.get("kid"), alg or chosen.get("alg"))


def _signing_key(path: Path, key: Any, kid: str | None, alg: str | None) -> SigningKey:
    if isinstance(key, rsa.RSAPrivateKey):
        natural = "RS384"
    elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        natural = "ES384"
    else:
        raise errors.ConfigError(
            f"{path}: the key must be RSA (RS384) or EC on curve P-384 (ES384), "
            "as SMART Backend Services asks"
        )
    if alg is not None and alg != natural:
        raise errors.ConfigError(f"{path}: alg {alg} does not fit this key; it signs with {natural}")
    return SigningKey(key=key, alg=natural, kid=kid or jwk_thumbprint(key.public_key()))


def jwk_thumbprint(public_key: Any) -> str:
    """RFC 7638 thumbprint: a stable key id for a PEM key that has none."""
    numbers = public_key.public_numbers()
    if isinstance(public_key, rsa.RSAPublicKey):
        members = {"e": _b64int(numbers.e), "kty": "RSA", "n": _b64int(numbers.n)}
    else:
        size = (public_key.curve.key_size + 7) // 8
        members = {
            "crv": "P-384",
            "kty": "EC",
            "x": _b64int(numbers.x, size),
            "y": _b64int(numbers.y, size),
        }
    digest = hashlib.sha256(orjson.dumps(members, option=orjson.OPT_SORT_KEYS)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _b64int(value: int, size: int | None = None) -> str:
    raw = value.to_bytes(size or max(1, (value.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def make_authorizer(config: fhir_settings.AuthConfig, clock: Clock = time.time) -> http.Authorizer:
    """The auth scheme a site's ``[sites.source.auth]`` table describes."""
    if isinstance(config, BearerAuth):
        token = credentials.read_secret(
            config.token_env, config.token_file, key=AUTH_TABLE, what="bearer token"
        )
        return StaticBearer(token)
    if isinstance(config, fhir_settings.BasicAuth):
        password = credentials.read_secret(
            config.password_env, config.password_file, key=AUTH_TABLE, what="basic auth password"
        )
        return Basic(config.username, password)
    if isinstance(config, fhir_settings.SmartBackendAuth):
        key = load_signing_key(config.key_file, config.kid, config.alg)
        return SmartBackendServices(
            config.client_id, key, token_url=config.token_url, scope=config.scope, clock=clock
        )
    return http.Anonymous()
