"""The ``trial-adapter`` command line.

Thin commands over the library (as in smart-fetch's ``cli/``): each parses
its options, loads the config, calls one library function and reports.  ``run()`` is the
console-script entry point; tests call ``app`` through typer's CliRunner or
``main(argv)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from adapter import __version__, errors, logs, privacy
from adapter.cli import (
    common,
    console_cmd,
    db_cmd,
    discover_cmd,
    issues_cmd,
    map_cmd,
    mapping_cmd,
    outbox_cmd,
    report,
    retraction_cmd,
    run_cmd,
    status_cmd,
    users_cmd,
)
from adapter.demo import generator, site
from adapter.fhir import smart_keys
from adapter.service import job
from adapter.store import db

HELP = """\
Pull trial data from a hospital's FHIR server, map it onto the NCT06507514
protocol, and deliver pseudonymized records to the trial repository.

\b
First steps:
  trial-adapter demo                      run the whole pipeline on the bundled demo sites
  trial-adapter check -c site.toml        validate a real site's config, mappings and roster
  trial-adapter sync -c site.toml --once  one sync pass for every site, then deliver
  trial-adapter issues list -c site.toml  what could not be mapped, and why

Exit codes: 0 ok, 3 bad config, 4 bad mapping file, 5 source unreadable,
6 state database unusable, 7 delivery failed (sync, push: items wait because
their last attempt failed; check: the repository cannot be reached, refuses
the credentials or cannot be written), 8 retraction held back (the source
stopped listing all or most of a type; see accept-retraction), 9 server
fault (the EHR answered a search with results it did not ask for; see
check), 10 open issues with --fail-on-issues.
"""

app = typer.Typer(help=HELP, no_args_is_help=True, rich_markup_mode=None, add_completion=False)
app.add_typer(issues_cmd.app, name="issues")
app.command()(mapping_cmd.remap)
app.command()(mapping_cmd.coverage)
app.command()(discover_cmd.discover)
app.command()(outbox_cmd.push)
app.command()(outbox_cmd.outbox)
app.command("run")(run_cmd.run)
app.command("status")(status_cmd.status)
app.add_typer(db_cmd.app, name="db")
app.add_typer(map_cmd.app, name="map")
app.add_typer(users_cmd.app, name="users")
app.command("console")(console_cmd.console)
app.command("accept-retraction")(retraction_cmd.accept_retraction)


def _version(value: bool) -> None:
    if value:
        common.console.print(f"trial-adapter {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error (logs go to stderr).")
    ] = "warning",
    json_logs: Annotated[
        bool | None,
        typer.Option(
            "--json-logs/--text-logs", help="Force the log format (default: JSON unless a terminal)."
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    logs.configure(log_level, json_logs)


def _run_with_progress(
    config: job.config_mod.Config, sites: Sequence[job.config_mod.SiteConfig], *, full: bool, quiet: bool
) -> job.JobResult:
    setups = job.load_setups(config, sites)
    change = job.repository_change(config, db.open_store(config.store.url))
    if change is not None:
        report.print_repository_change(config, change)
    if quiet:
        return job.run_setups(config, setups, full=full)
    total = job.expected_lines(setups)
    columns = (
        TextColumn("[bold]syncing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("resources"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=common.err_console, transient=True) as bar:
        task = bar.add_task("sync", total=total)
        return job.run_setups(config, setups, full=full, progress=lambda n: bar.advance(task, n))


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option("--workdir", "-w", help="Where the demo keeps its state database and repository.")
    ] = Path("var/demo"),
    full: Annotated[bool, typer.Option("--full", help="Re-map every resource, even unchanged ones.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run the whole pipeline on the bundled demo sites (no server needed).

    Syncs the two synthetic sites shipped with the package into a SQLite state
    file, delivers the protocol records to a file repository, and prints what
    happened.  Run it twice: the second run finds nothing new and sends nothing.
    """
    with common.reported_errors():
        config = site.demo_config(workdir)
        result = _run_with_progress(config, config.sites, full=full, quiet=quiet)
        report.print_summary(config, result)


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the demo sites into.")],
    patients: Annotated[int, typer.Option("--patients", min=1, help="Patients per site.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same files.")] = 7,
) -> None:
    """Generate synthetic demo site data (FHIR R4 NDJSON + roster) deterministically.

    The bundled demo data set is this command's output with the defaults
    (`--out adapter/demo/data`); regenerate it, never edit it by hand.
    """
    result = generator.generate(out, patients_per_site=patients, seed=seed)
    common.console.print(f"wrote demo sites to {out}: {result}")


@app.command()
def sync(
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    site_id: common.SiteOption = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Accepted for existing scripts: sync always makes one pass and exits; "
            "`trial-adapter run` syncs on a schedule.",
        ),
    ] = False,
    full: Annotated[
        bool, typer.Option("--full", help="Re-map every stored resource, not just new versions.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    fail_on_issues: Annotated[
        bool, typer.Option("--fail-on-issues", help="Exit 10 when open issues remain after the pass.")
    ] = False,
) -> None:
    """Sync every configured site once, then deliver the outbox.

    \b
    Exit codes: 8 when a retraction was held back; else 7 when delivery
    items wait because their last attempt failed (in this run, or an earlier
    one whose backoff has not passed), with the error and the next retry
    time; else 10 with --fail-on-issues and open issues.  After [repository]
    changed, a warning names `trial-adapter push --resend`.
    """
    with common.reported_errors():
        config = common.load_config(config_path)
        sites = common.selected_sites(config, site_id)
        result = _run_with_progress(config, sites, full=full, quiet=quiet)
        open_issues = report.print_summary(config, result)
        held = report.print_held_retractions(config, result)
        failing = report.print_delivery_trouble(config, result.delivery)
        if held:
            raise typer.Exit(errors.EXIT_RETRACTION_HELD)
        if failing:
            raise typer.Exit(errors.EXIT_DELIVERY)
        if fail_on_issues and open_issues:
            raise typer.Exit(errors.EXIT_ISSUES_OPEN)


@app.command()
def check(config_path: common.ConfigOption = common.DEFAULT_CONFIG) -> None:
    """Validate the config, mapping files, rosters, secret, sources and the trial repository.

    Loads everything a sync would load and reports each site as ok or with the
    error and its fix, without changing any state.  The trial repository is
    tried without writing to it: a FHIR server's metadata and a count-only
    search with the credentials, REDCap's version export with the token, a
    HEAD on an http endpoint, a temporary file in a file repository's folder
    (exit 7 when it fails).  A warning names `trial-adapter push --resend`
    when [repository] changed and the new one lacks current records.
    """
    with common.reported_errors():
        config = common.load_config(config_path)
        failures = report.print_check(config)
        if failures:
            raise typer.Exit(failures[0])


@app.command()
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
        common.err_console.print(f"[red]error:[/red] {path} exists; refusing to overwrite a site secret")
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
        f"wrote the SMART private key ({pair.alg}) to {escape(str(pair.key_file))} (mode 0600): "
        "keep it on this machine, never send it",
        highlight=False,
    )
    note.print(
        f"wrote the public JWKS to {escape(str(pair.jwks_file))}: send it (or an https URL serving it) "
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
        markup=False,
    )


def _toml_string(path: Path) -> str:
    """A TOML basic string: JSON's escapes are a subset of TOML's."""
    return json.dumps(str(path), ensure_ascii=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv``; return the exit code instead of exiting."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="trial-adapter", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())
