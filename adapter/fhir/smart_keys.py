"""The adapter's SMART Backend Services key pair: made here, registered at the EHR.

SMART Backend Services
(https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html)
has the client keep a private key and the EHR know the public half as a JWK
Set, registered as a file or served at a URL (``jwks_uri``).  Servers must
accept RS384 and ES384, so those are the two algorithms offered: ES384 (EC
P-384) by default, for its small keys, and RS384 (RSA, at least 2048 bits)
for EHRs that take RSA only.

The private key is written as an unencrypted PKCS#8 PEM file, mode 0600, the
form ``adapter.fhir.auth.load_signing_key`` reads.  The public JWKS carries
``kid`` = the RFC 7638 thumbprint of the key, which is also the kid
``load_signing_key`` picks for a PEM key when the config names none, so the
key, the JWKS and the config agree without anyone copying a kid by hand.
Neither file is ever overwritten: a new key is a new registration at the EHR.
"""

from __future__ import annotations

import base64
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from adapter import errors
from adapter.fhir import auth

Algorithm = Literal["ES384", "RS384"]
DEFAULT_ALG: Algorithm = "ES384"
MIN_RSA_BITS = 2048  # RFC 7518 §3.3: RSA keys for RS384 must have at least 2048 bits
DEFAULT_RSA_BITS = 3072  # NIST SP 800-57: 2048-bit RSA is only acceptable until 2030
JWKS_SUFFIX = ".public.jwks.json"


@dataclass(frozen=True)
class SmartKeyPair:
    """What ``write_key_pair`` wrote: where, with which algorithm and key id, and the public JWKS."""

    key_file: Path
    jwks_file: Path
    alg: Algorithm
    kid: str
    jwks: dict[str, Any]

    def jwks_text(self) -> str:
        return jwks_text(self.jwks)


def default_jwks_path(key_file: Path) -> Path:
    """``secrets/trial-adapter.pem`` → ``secrets/trial-adapter.public.jwks.json``.

    "public" in the name, because the EHR team gets this file and the site IT
    team must never mix it up with the private key next to it.
    """
    return key_file.with_name(key_file.stem + JWKS_SUFFIX)


def generate_private_key(
    alg: Algorithm = DEFAULT_ALG, rsa_bits: int = DEFAULT_RSA_BITS
) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """A new private key for ``alg``: EC on P-384 for ES384, RSA of ``rsa_bits`` for RS384."""
    if alg == "ES384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg == "RS384":
        if rsa_bits < MIN_RSA_BITS:
            raise errors.ConfigError(
                f"an RSA key for RS384 needs at least {MIN_RSA_BITS} bits, not {rsa_bits}"
            )
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    raise errors.ConfigError(f"unknown algorithm {alg!r}; use ES384 or RS384")


def public_jwk(public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey, alg: Algorithm) -> dict[str, Any]:
    """The public key as a JWK (RFC 7517/7518 §6) with its kid, for verifying signatures only."""
    if isinstance(public_key, rsa.RSAPublicKey):
        rsa_numbers = public_key.public_numbers()
        members: dict[str, Any] = {"kty": "RSA", "n": _b64int(rsa_numbers.n), "e": _b64int(rsa_numbers.e)}
    elif isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, ec.SECP384R1):
        ec_numbers = public_key.public_numbers()
        # RFC 7518 §6.2.1.2: x and y are always the full 48 bytes of a P-384 coordinate
        members = {
            "kty": "EC",
            "crv": "P-384",
            "x": _b64int(ec_numbers.x, 48),
            "y": _b64int(ec_numbers.y, 48),
        }
    else:
        raise errors.ConfigError("the key must be RSA (RS384) or EC on curve P-384 (ES384)")
    return {
        **members,
        "kid": auth.jwk_thumbprint(public_key),
        "alg": alg,
        "use": "sig",
        "key_ops": ["verify"],
    }


def public_jwks(
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, alg: Algorithm
) -> dict[str, Any]:
    """The JWK Set the EHR registers: the public half of ``private_key`` only."""
    return {"keys": [public_jwk(private_key.public_key(), alg)]}


def jwks_text(jwks: dict[str, Any]) -> str:
    return orjson.dumps(jwks, option=orjson.OPT_INDENT_2).decode("ascii") + "\n"


def write_key_pair(
    key_file: Path,
    jwks_file: Path | None = None,
    *,
    alg: Algorithm = DEFAULT_ALG,
    rsa_bits: int = DEFAULT_RSA_BITS,
) -> SmartKeyPair:
    """Make a key pair: the private key to ``key_file`` (PEM, 0600), the public JWKS next to it.

    Raises ``FileExistsError`` (naming the file) when either file exists, and
    then writes nothing: overwriting a registered key would lock the adapter
    out of the EHR.
    """
    jwks_file = jwks_file if jwks_file is not None else default_jwks_path(key_file)
    if jwks_file.absolute() == key_file.absolute():
        raise errors.ConfigError(f"{key_file}: the private key and the public JWKS need two different files")
    for path in (key_file, jwks_file):
        if path.exists():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
    private_key = generate_private_key(alg, rsa_bits)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    jwks = public_jwks(private_key, alg)
    _write_new(key_file, pem, stat.S_IRUSR | stat.S_IWUSR, exact_mode=True)
    try:
        _write_new(jwks_file, jwks_text(jwks).encode("ascii"), 0o644)
    except BaseException:
        key_file.unlink()  # ours, created a moment ago: a half-made pair is no use to anyone
        raise
    return SmartKeyPair(
        key_file=key_file, jwks_file=jwks_file, alg=alg, kid=jwks["keys"][0]["kid"], jwks=jwks
    )


def _write_new(path: Path, data: bytes, mode: int, *, exact_mode: bool = False) -> None:
    """Create ``path`` (never replace it) with ``mode``; ``exact_mode`` also overrides a looser umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        if exact_mode:
            os.fchmod(handle.fileno(), mode)
        handle.write(data)


def _b64int(value: int, size: int | None = None) -> str:
    raw = value.to_bytes(size or max(1, (value.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
