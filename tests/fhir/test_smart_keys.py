"""The SMART client key pair: a private PEM the auth code reads, a public JWKS the EHR registers.

JWK members: RFC 7517 and RFC 7518 §6; the kid is the RFC 7638 thumbprint,
computed here independently of the adapter's own ``auth.jwk_thumbprint``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from adapter import errors
from adapter.fhir import auth, smart_keys

# Every JWK member that carries private key material (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
PUBLIC_MEMBERS = {
    "ES384": {"kty", "crv", "x", "y", "kid", "alg", "use", "key_ops"},
    "RS384": {"kty", "n", "e", "kid", "alg", "use", "key_ops"},
}


def rfc7638_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, no whitespace, base64url."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in required}, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def test_kid_is_the_rfc_7638_thumbprint_of_the_rfcs_own_example() -> None:
    """RFC 7638 §3.1 gives this RSA key and its thumbprint."""
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
        "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
        "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
        "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    public = rsa.RSAPublicNumbers(65537, int.from_bytes(b64decode(n), "big")).public_key()
    jwk = smart_keys.public_jwk(public, "RS384")
    assert jwk["n"] == n and jwk["e"] == "AQAB"
    assert jwk["kid"] == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_key_pair_files_and_jwks(tmp_path: Path, alg: smart_keys.Algorithm) -> None:
    key_file = tmp_path / "secrets" / "trial-adapter.pem"
    pair = smart_keys.write_key_pair(key_file, alg=alg, rsa_bits=2048)

    assert pair.jwks_file == tmp_path / "secrets" / "trial-adapter.public.jwks.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    jwks = json.loads(pair.jwks_file.read_text())
    assert jwks == pair.jwks
    (jwk,) = jwks["keys"]
    assert set(jwk) == PUBLIC_MEMBERS[alg]
    assert not PRIVATE_MEMBERS & set(jwk)
    assert jwk["alg"] == alg and jwk["use"] == "sig" and jwk["key_ops"] == ["verify"]
    assert jwk["kid"] == pair.kid == rfc7638_thumbprint(jwk)

    # The adapter's auth code reads the PEM as it is and arrives at the same kid on its own.
    signing = auth.load_signing_key(key_file)
    assert (signing.alg, signing.kid) == (alg, pair.kid)
    if alg == "ES384":
        assert isinstance(signing.key, ec.EllipticCurvePrivateKey)
        assert isinstance(signing.key.curve, ec.SECP384R1)
        assert len(b64decode(jwk["x"])) == len(b64decode(jwk["y"])) == 48  # RFC 7518 §6.2.1.2
    else:
        assert isinstance(signing.key, rsa.RSAPrivateKey)
        assert signing.key.key_size == 2048


def test_rsa_keys_default_to_3072_bits_and_refuse_fewer_than_2048(tmp_path: Path) -> None:
    key = smart_keys.generate_private_key("RS384")
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == smart_keys.DEFAULT_RSA_BITS == 3072
    with pytest.raises(errors.ConfigError, match="at least 2048 bits"):
        smart_keys.write_key_pair(tmp_path / "k.pem", alg="RS384", rsa_bits=1024)
    assert list(tmp_path.iterdir()) == []


def test_existing_files_are_never_overwritten_and_nothing_is_half_written(tmp_path: Path) -> None:
    key_file = tmp_path / "k.pem"
    key_file.write_text("the key the EHR knows")
    with pytest.raises(FileExistsError) as caught:
        smart_keys.write_key_pair(key_file)
    assert caught.value.filename == str(key_file)
    assert key_file.read_text() == "the key the EHR knows"
    assert not smart_keys.default_jwks_path(key_file).exists()

    jwks_file = tmp_path / "registered.json"
    jwks_file.write_text("{}")
    with pytest.raises(FileExistsError) as caught:
        smart_keys.write_key_pair(tmp_path / "new.pem", jwks_file)
    assert caught.value.filename == str(jwks_file)
    assert jwks_file.read_text() == "{}"
    assert not (tmp_path / "new.pem").exists()

    with pytest.raises(errors.ConfigError, match="two different files"):
        smart_keys.write_key_pair(tmp_path / "same", tmp_path / "same")


def test_the_private_key_is_0600_even_under_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        pair = smart_keys.write_key_pair(tmp_path / "k.pem")
    finally:
        os.umask(old)
    assert stat.S_IMODE(pair.key_file.stat().st_mode) == 0o600
