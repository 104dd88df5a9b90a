"""``trial-adapter keygen``: the site secret, or the SMART client key pair.

Both are written once and never overwritten (exit 3): a new site secret
changes every hash of a source reference, a new SMART key needs a new
registration at the EHR.  The key material is made by ``adapter.privacy``
and ``adapter.fhir.smart_keys``; this module names the files and says what
to do with them next.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from adapter import errors, privacy
from adapter.cli import common
from adapter.fhir import smart_keys


def keygen(
    path: Annotated[
        Path,
        typer.Argument(
            help="Where to write the new site secret, or with --smart the SMART private key (must not exist)."
        ),
    ],
    smart: Annotated[
        bool,
        typer.Option(
            "--smart",
            help="Make the SMART Backend Services key pair the adapter signs in to the EHR with, "
            "instead of the site secret.",
        ),
    ] = False,
    alg: Annotated[
        Literal["ES384", "RS384"] | None,
        typer.Option(
            "--alg",
            help="With --smart: ES384 (EC P-384, the default) or RS384 (RSA) if the EHR takes RSA only.",
        ),
    ] = None,
    rsa_bits: Annotated[
        int | None,
        typer.Option(
            "--rsa-bits",
            min=smart_keys.MIN_RSA_BITS,
            help=f"With --alg RS384: the RSA key size (default {smart_keys.DEFAULT_RSA_BITS}).",
        ),
    ] = None,
    jwks: Annotated[
        Path | None,
        typer.Option(
            "--jwks",
            help=f"With --smart: where to write the public JWKS (default: PATH with its suffix replaced "
            f"by {smart_keys.JWKS_SUFFIX}; must not exist).",
        ),
    ] = None,
) -> None:
    """Create the site secret, or with --smart the SMART client key pair (never overwrites).

    \b
    trial-adapter keygen secrets/site.key
      The site secret (mode 0600) that keys the hashes of source references.
      Point [privacy] hmac_key_file at it and back it up; it never leaves the site.

    \b
    trial-adapter keygen --smart secrets/trial-adapter.pem [--alg RS384]
      The key pair for SMART Backend Services, for [sites.source.auth]
      kind = "smart-backend". Writes two files:
      - PATH: the private key (PEM, mode 0600). It stays on this machine and
        is never sent to anyone; point key_file at it.
      - secrets/trial-adapter.public.jwks.json: the public key as a JWK Set,
        with its kid (the key's RFC 7638 thumbprint). Send this file, or an
        https URL that serves it, to the EHR team; they register it with the
        adapter's client and give you the client_id.
      The JWKS is also printed on stdout; the next steps go to stderr.
      Then set client_id, key_file and kid and run `trial-adapter check`
      (docs/sources.md, "Registering the adapter with the EHR").

    An existing file is never replaced (exit code 3): a new secret changes
    every hash, a new SMART key needs a new registration at the EHR.
    """
    if smart:
        _keygen_smart(path, jwks, alg or smart_keys.DEFAULT_ALG, rsa_bits)
        return
    for name, value in (("--alg", alg), ("--rsa-bits", rsa_bits), ("--jwks", jwks)):
        if value is not None:
            raise typer.BadParameter(f"{name} only goes with --smart", param_hint=name)
    try:
        privacy.write_secret(path)
    except FileExistsError:
        common.print_error(f"{path} exists; refusing to overwrite a site secret")
        raise typer.Exit(errors.EXIT_CONFIG) from None
    common.console.print(f"wrote a new site secret to {path}; point privacy.hmac_key_file at it")


def _keygen_smart(
    path: Path, jwks: Path | None, alg: Literal["ES384", "RS384"], rsa_bits: int | None
) -> None:
    if rsa_bits is not None and alg != "RS384":
        raise typer.BadParameter("--rsa-bits only goes with --alg RS384", param_hint="--rsa-bits")
    with common.reported_errors():
        try:
            pair = smart_keys.write_key_pair(
                path, jwks, alg=alg, rsa_bits=rsa_bits or smart_keys.DEFAULT_RSA_BITS
            )
        except FileExistsError as exc:
            fix = "choose another PATH" if Path(exc.filename) == path else "choose another --jwks"
            raise errors.ConfigError(
                f"{exc.filename} exists; refusing to overwrite a SMART key file (a key the EHR knows "
                f"would stop working); nothing was written, {fix}"
            ) from None
    typer.echo(pair.jwks_text(), nl=False)  # the public JWKS alone on stdout, ready to pipe or paste
    note = common.err_console
    note.print(
        f"wrote the SMART private key ({pair.alg}) to {pair.key_file} (mode 0600): "
        "keep it on this machine, never send it",
        highlight=False,
    )
    note.print(
        f"wrote the public JWKS to {pair.jwks_file}: send it (or an https URL serving it) "
        "to the EHR team to register for the adapter's client; they give you the client_id",
        highlight=False,
    )
    note.print(
        "then, in [sites.source.auth] of the config:\n"
        '  kind = "smart-backend"\n'
        '  client_id = "<the client_id the EHR team registered>"\n'
        f"  key_file = {_toml_string(pair.key_file.absolute())}\n"
        f'  kid = "{pair.kid}"\n'
        "and run `trial-adapter check`",
        highlight=False,
    )


def _toml_string(path: Path) -> str:
    """A TOML basic string: JSON's escapes are a subset of TOML's."""
    return json.dumps(str(path), ensure_ascii=False)
