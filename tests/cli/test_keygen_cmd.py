"""``trial-adapter keygen --smart``: the SMART client key, end to end with the adapter's own auth code.

The round trip is the one a site goes through: make the key, hand the JWKS
to the EHR, put client_id / key_file / kid into ``[sites.source.auth]``; the
EHR's token endpoint (mocked here) then verifies the adapter's client
assertion against the registered JWKS with PyJWT.
"""

from __future__ import annotations

import base64
import json
import stat
import urllib.parse
from pathlib import Path
from typing import Any

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from typer.testing import CliRunner

from adapter import errors
from adapter.cli import main
from adapter.fhir import auth, http
from adapter.fhir import settings as fhir_settings

runner = CliRunner()
BASE = "https://ehr.example.org/fhir/r4"
TOKEN_URL = "https://ehr.example.org/oauth2/token"  # noqa: S105


def keygen(*args: str) -> Any:
    return runner.invoke(main.app, ["keygen", "--smart", *args])


def private_values(key_file: Path) -> list[str]:
    """The base64url of every private number of the key: none may ever be printed."""
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = [key.private_numbers().private_value]
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        n = key.private_numbers()
        numbers = [n.d, n.p, n.q, n.dmp1, n.dmq1, n.iqmp]
    return [
        base64.urlsafe_b64encode(v.to_bytes((v.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
        for v in numbers
    ]


def test_smart_keygen_writes_key_and_jwks_and_prints_only_the_public_part(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets" / "trial-adapter.pem"
    result = keygen(str(key_file))
    assert result.exit_code == 0, result.output

    jwks_file = tmp_path / "secrets" / "trial-adapter.public.jwks.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert json.loads(result.stdout) == json.loads(jwks_file.read_text())
    (jwk,) = json.loads(result.stdout)["keys"]
    assert jwk["alg"] == "ES384" and jwk["kty"] == "EC" and "d" not in jwk
    assert jwk["kid"] == auth.jwk_thumbprint(auth.load_signing_key(key_file).key.public_key())
    # The next steps name the files, the config keys and the kid; the private key appears nowhere.
    for fragment in (str(jwks_file), "EHR team", "client_id", "key_file", f'kid = "{jwk["kid"]}"', "check"):
        assert fragment in result.stderr
    assert "PRIVATE KEY" not in result.output
    assert key_file.read_text().strip().splitlines()[1] not in result.output
    for value in private_values(key_file):
        assert value not in result.output


def test_smart_keygen_rs384_to_a_chosen_jwks_file(tmp_path: Path) -> None:
    key_file, jwks_file = tmp_path / "rsa.pem", tmp_path / "register" / "adapter.json"
    result = keygen("--alg", "RS384", "--rsa-bits", "2048", "--jwks", str(jwks_file), str(key_file))
    assert result.exit_code == 0, result.output
    (jwk,) = json.loads(jwks_file.read_text())["keys"]
    assert jwk["alg"] == "RS384" and jwk["kty"] == "RSA"
    assert not {"d", "p", "q", "dp", "dq", "qi", "oth"} & set(jwk)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    for value in private_values(key_file):
        assert value not in result.output


def test_smart_keygen_refuses_to_overwrite_either_file(tmp_path: Path) -> None:
    key_file = tmp_path / "k.pem"
    assert keygen(str(key_file)).exit_code == 0
    before = key_file.read_bytes(), (tmp_path / "k.public.jwks.json").read_bytes()

    again = keygen(str(key_file))
    assert again.exit_code == errors.EXIT_CONFIG
    assert "refusing to overwrite" in again.stderr and "another PATH" in again.stderr
    assert (key_file.read_bytes(), (tmp_path / "k.public.jwks.json").read_bytes()) == before

    other = keygen("--jwks", str(tmp_path / "k.public.jwks.json"), str(tmp_path / "new.pem"))
    assert other.exit_code == errors.EXIT_CONFIG
    assert "another --jwks" in other.stderr
    assert not (tmp_path / "new.pem").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["keygen", "--alg", "RS384", "x"],
        ["keygen", "--jwks", "j.json", "x"],
        ["keygen", "--smart", "--rsa-bits", "4096", "x"],
        ["keygen", "--smart", "--alg", "RS384", "--rsa-bits", "1024", "x"],
        ["keygen", "--smart", "--alg", "HS256", "x"],
    ],
)
def test_smart_options_are_checked(tmp_path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(main.app, args).exit_code == errors.EXIT_USAGE
    assert list(tmp_path.iterdir()) == []


def test_plain_keygen_still_makes_the_site_secret(tmp_path: Path) -> None:
    result = runner.invoke(main.app, ["keygen", str(tmp_path / "site.key")])
    assert result.exit_code == 0, result.output
    assert len(bytes.fromhex((tmp_path / "site.key").read_text().strip())) == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site.key"]


def test_keygen_help_says_what_each_file_is_for() -> None:
    result = runner.invoke(main.app, ["keygen", "--help"])
    assert result.exit_code == 0
    for fragment in ("--smart", "private key", "never sent", "JWK Set", "EHR team", "client_id", "RS384"):
        assert fragment in result.output


@responses.activate
@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_a_keygen_key_signs_assertions_the_registered_jwks_verifies(tmp_path: Path, alg: str) -> None:
    key_file = tmp_path / "trial-adapter.pem"
    result = keygen("--alg", alg, *(["--rsa-bits", "2048"] if alg == "RS384" else []), str(key_file))
    assert result.exit_code == 0, result.output
    registered = jwt.PyJWKSet.from_json((tmp_path / "trial-adapter.public.jwks.json").read_text())
    kid = registered.keys[0].key_id

    def token_endpoint(request):  # type: ignore[no-untyped-def]
        """The EHR: look the key up by the assertion's kid in the registered JWKS, verify, answer."""
        form = dict(urllib.parse.parse_qsl(request.body))
        assertion = form["client_assertion"]
        header = jwt.get_unverified_header(assertion)
        public = registered[header["kid"]]
        claims = jwt.decode(assertion, public.key, algorithms=[public.algorithm_name], audience=TOKEN_URL)
        assert header["alg"] == alg
        assert claims["iss"] == claims["sub"] == "adapter-at-site-a"
        return 200, {}, json.dumps({"access_token": "granted", "expires_in": 300})

    responses.add_callback(responses.POST, TOKEN_URL, callback=token_endpoint)
    # [sites.source.auth] as docs/sources.md tells the site to write it; kid from the keygen output,
    # and once without kid (the adapter then computes the same thumbprint itself).
    for table in (
        {"kid": kid},
        {},
    ):
        config = fhir_settings.SmartBackendAuth.model_validate(
            {
                "kind": "smart-backend",
                "client_id": "adapter-at-site-a",
                "key_file": str(key_file),
                "token_url": TOKEN_URL,
                **table,
            }
        )
        authorizer = auth.make_authorizer(config)
        client = http.FhirClient("site-a", BASE)
        assert authorizer.headers(client) == {"Authorization": "Bearer granted"}
    assert len(responses.calls) == 2
