"""Auth schemes, and the SMART Backend Services client assertion checked against the spec.

https://hl7.org/fhir/smart-app-launch/backend-services.html: the assertion is
a JWT with header ``alg`` (RS384 or ES384), ``kid`` and ``typ: JWT``; claims
``iss`` = ``sub`` = client id, ``aud`` = the token URL, ``exp`` no more than
five minutes ahead, and a ``jti`` never used before.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from adapter import errors
from adapter.fhir import auth, http
from adapter.fhir import settings as fhir_settings
from adapter.net.settings import BearerAuth

from fhirtesting import BASE, Sleeps

TOKEN_URL = "https://ehr.example.org/oauth2/token"  # noqa: S105


def write_pem(path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def write_jwks(path: Path, key: ec.EllipticCurvePrivateKey, kid: str) -> Path:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
    path.write_text(json.dumps({"keys": [{**jwk, "kid": kid, "alg": "ES384", "key_ops": ["sign"]}]}))
    return path


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def test_assertion_follows_the_smart_spec_rs384(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    key = auth.load_signing_key(write_pem(tmp_path / "key.pem", rsa_key))
    smart = auth.SmartBackendServices("trial-adapter", key, token_url=TOKEN_URL)
    before = time.time()
    first, second = smart.assertion(TOKEN_URL), smart.assertion(TOKEN_URL)
    header = jwt.get_unverified_header(first)
    assert header == {"alg": "RS384", "kid": auth.jwk_thumbprint(rsa_key.public_key()), "typ": "JWT"}
    claims = jwt.decode(first, rsa_key.public_key(), algorithms=["RS384"], audience=TOKEN_URL)
    assert claims["iss"] == claims["sub"] == "trial-adapter"
    assert claims["aud"] == TOKEN_URL
    assert before < claims["exp"] <= before + 300  # SMART: at most five minutes ahead
    assert claims["jti"] and claims["jti"] != jwt.decode(second, options={"verify_signature": False})["jti"]
    assert set(claims) == {"iss", "sub", "aud", "exp", "jti"}


def test_assertion_es384_from_jwks_uses_its_kid(tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey) -> None:
    key = auth.load_signing_key(write_jwks(tmp_path / "jwks.json", ec_key, "key-2025"))
    assertion = auth.SmartBackendServices("c1", key).assertion(TOKEN_URL)
    assert jwt.get_unverified_header(assertion) == {"alg": "ES384", "kid": "key-2025", "typ": "JWT"}
    jwt.decode(assertion, ec_key.public_key(), algorithms=["ES384"], audience=TOKEN_URL)


def test_unsuitable_keys_are_config_errors(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    p256 = write_pem(tmp_path / "p256.pem", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(errors.ConfigError, match="P-384"):
        auth.load_signing_key(p256)
    with pytest.raises(errors.ConfigError, match="does not fit"):
        auth.load_signing_key(write_pem(tmp_path / "rsa.pem", rsa_key), alg="ES384")
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(errors.ConfigError, match="PEM"):
        auth.load_signing_key(tmp_path / "junk.pem")
    with pytest.raises(errors.ConfigError, match="cannot read"):
        auth.load_signing_key(tmp_path / "missing.pem")


def token_callback(lifetime: int, issued: list[dict[str, str]]):  # type: ignore[no-untyped-def]
    def respond(request):  # type: ignore[no-untyped-def]
        form = dict(urllib.parse.parse_qsl(request.body))
        issued.append(form)
        body = {"access_token": f"token-{len(issued)}", "token_type": "bearer", "expires_in": lifetime}
        return 200, {}, json.dumps(body)

    return respond


@responses.activate
def test_token_is_discovered_fetched_cached_and_renewed(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    responses.get(
        f"{BASE}/.well-known/smart-configuration",
        json={
            "token_endpoint": TOKEN_URL,
            "capabilities": ["permission-v2", "client-confidential-asymmetric"],
        },
    )
    issued: list[dict[str, str]] = []
    responses.add_callback(responses.POST, TOKEN_URL, callback=token_callback(600, issued))
    clock = Clock(1_000_000.0)
    smart = auth.SmartBackendServices(
        "trial-adapter", auth.load_signing_key(write_pem(tmp_path / "k.pem", rsa_key)), clock=clock
    )
    client = http.FhirClient("test-site", BASE, auth=smart)
    assert smart.headers(client) == {"Authorization": "Bearer token-1"}
    clock.now += 500  # still 100 s left: cached
    assert smart.headers(client) == {"Authorization": "Bearer token-1"}
    clock.now += 60  # inside the renewal margin: a new token
    assert smart.headers(client) == {"Authorization": "Bearer token-2"}
    form = issued[0]
    assert form["grant_type"] == "client_credentials"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert form["scope"].split() == [f"system/{t}.rs" for t in auth.READ_TYPES]  # v2 scopes offered
    claims = jwt.decode(
        form["client_assertion"],
        rsa_key.public_key(),
        algorithms=["RS384"],
        audience=TOKEN_URL,
        options={"verify_exp": False},  # made with the injected clock, long ago
    )
    assert claims["exp"] == 1_000_000 + auth.ASSERTION_LIFETIME
    assert len([c for c in responses.calls if "smart-configuration" in c.request.url]) == 1


@responses.activate
def test_expired_token_401_reauths_once(tmp_path: Path, rsa_key: rsa.RSAPrivateKey, sleeps: Sleeps) -> None:
    issued: list[dict[str, str]] = []
    responses.add_callback(responses.POST, TOKEN_URL, callback=token_callback(3600, issued))
    responses.get(f"{BASE}/Patient", status=401, json={"resourceType": "OperationOutcome", "issue": []})
    responses.get(f"{BASE}/Patient", json={"resourceType": "Bundle", "type": "searchset"})
    smart = auth.SmartBackendServices(
        "trial-adapter", auth.load_signing_key(write_pem(tmp_path / "k.pem", rsa_key)), token_url=TOKEN_URL
    )
    client = http.FhirClient("test-site", BASE, auth=smart, sleep=sleeps)
    client.get_json("Patient")
    assert len(issued) == 2 and sleeps == []
    patient_calls = [c for c in responses.calls if c.request.url.startswith(f"{BASE}/Patient")]
    assert [c.request.headers["Authorization"] for c in patient_calls] == ["Bearer token-1", "Bearer token-2"]


@responses.activate
def test_refused_assertion_is_an_auth_error_with_the_fix(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    responses.post(
        TOKEN_URL, status=401, json={"error": "invalid_client", "error_description": "unknown key"}
    )
    key = auth.load_signing_key(write_pem(tmp_path / "k.pem", rsa_key), kid="adapter-1")
    smart = auth.SmartBackendServices("trial-adapter", key, token_url=TOKEN_URL)
    with pytest.raises(errors.AuthError, match=r"unknown key.*kid 'adapter-1'"):
        smart.headers(http.FhirClient("test-site", BASE))


@responses.activate
def test_missing_token_endpoint_says_what_to_set(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    responses.get(f"{BASE}/.well-known/smart-configuration", json={"capabilities": []})
    smart = auth.SmartBackendServices("c", auth.load_signing_key(write_pem(tmp_path / "k.pem", rsa_key)))
    with pytest.raises(errors.AuthError, match="token_url"):
        smart.headers(http.FhirClient("test-site", BASE))


def test_v1_scopes_when_the_server_offers_only_v1(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    smart = auth.SmartBackendServices("c", auth.load_signing_key(write_pem(tmp_path / "k.pem", rsa_key)))
    smart._capabilities = ["permission-v1"]
    assert smart.scope().split()[0] == "system/Patient.read"


def test_static_schemes_read_secrets_from_env_or_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SITE_TOKEN", "s3cret-token\n")
    bearer = auth.make_authorizer(BearerAuth(kind="bearer", token_env="SITE_TOKEN"))  # noqa: S106
    client = http.FhirClient("test-site", BASE)
    assert bearer.headers(client) == {"Authorization": "Bearer s3cret-token"}
    assert bearer.refresh(client) is False  # a static token cannot be renewed: a 401 is final
    (tmp_path / "pw").write_text("pa:ss\n")
    basic = auth.make_authorizer(
        fhir_settings.BasicAuth(kind="basic", username="u", password_file=tmp_path / "pw")
    )
    assert basic.headers(client) == {"Authorization": "Basic dTpwYTpzcw=="}
    monkeypatch.delenv("SITE_TOKEN")
    with pytest.raises(errors.ConfigError, match="SITE_TOKEN") as caught:
        auth.make_authorizer(BearerAuth(kind="bearer", token_env="SITE_TOKEN"))  # noqa: S106
    assert "s3cret" not in str(caught.value)


@responses.activate
def test_a_retried_token_request_carries_a_fresh_jti(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, sleeps: Sleeps
) -> None:
    responses.post(TOKEN_URL, status=503)
    issued: list[dict[str, str]] = []
    responses.add_callback(responses.POST, TOKEN_URL, callback=token_callback(300, issued))
    smart = auth.SmartBackendServices(
        "trial-adapter", auth.load_signing_key(write_pem(tmp_path / "k.pem", rsa_key)), token_url=TOKEN_URL
    )
    smart.headers(http.FhirClient("test-site", BASE, sleep=sleeps))
    sent = [dict(urllib.parse.parse_qsl(call.request.body)) for call in responses.calls]
    jtis = [jwt.decode(f["client_assertion"], options={"verify_signature": False})["jti"] for f in sent]
    assert len(jtis) == 2 and jtis[0] != jtis[1]  # a server that saw the first would refuse a replay
