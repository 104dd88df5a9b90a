"""``trial-adapter map``: the console's one-step fixes on the command line.

Each subcommand calls the same ``adapter.reconciliation`` function as the console:
write the site override, re-map the stored resources, resolve what the fix
resolves, audit it, and report how many protocol records changed.
``--deliver`` (default) then drains the outbox, like ``remap``.  ``accept``
is ``code`` for a concept the adapter suggested (``reconciliation.suggestions``),
so a person confirms a suggestion in one step; nothing maps a suggestion by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter.cli import common
from adapter.reconciliation import actions, fixes, suggestions, undoing
from adapter.service import job
from adapter.store import db

app = typer.Typer(
    help="Fix mapping issues: map codes and units, accept a suggestion, ignore codes, undo.",
    no_args_is_help=True,
)

SiteArgument = Annotated[str, typer.Option("--site", "-s", help="The site whose override file to change.")]
DeliverOption = Annotated[bool, typer.Option("--deliver/--no-deliver", help="Drain the outbox afterwards.")]

Fix = Callable[[config_mod.Config, sessionmaker[Session]], actions.FixResult]


def _run_fix(config_path: Path, deliver: bool, fix: Fix) -> None:
    """Load the config, open the store, apply ``fix`` and report it.

    Each subcommand only says which ``adapter.reconciliation`` call to make, so they
    all report, deliver and turn errors into exit codes the same way.
    """
    with common.reported_errors():
        config = common.load_config(config_path)
        sessions = db.open_store(config.store.url)
        _report(config, sessions, fix(config, sessions), deliver)


def _report(
    config: config_mod.Config, sessions: sessionmaker[Session], result: actions.FixResult, deliver: bool
) -> None:
    common.console.print(result.summary, highlight=False, soft_wrap=True)
    if result.file:
        common.console.print(f"  wrote {result.file}", highlight=False, soft_wrap=True)
    if result.records_by_type:
        common.console.print(
            "  " + ", ".join(f"{t} × {n}" for t, n in result.records_by_type.items()), highlight=False
        )
    for key in result.issues_resolved:
        common.console.print(f"  resolved {key}", highlight=False, soft_wrap=True)
    for key in result.issues_opened:
        common.console.print(f"  opened   {key}", highlight=False, soft_wrap=True)
    common.console.print(f"audit entry {result.audit_id} (undo: trial-adapter map undo {result.audit_id})")
    if deliver and result.records_changed:
        drained = job.deliver_outbox(config, sessions)
        common.console.print(
            f"Delivered {drained.delivered} change(s)."
            if drained
            else "Another process is delivering the outbox."
        )


@app.command("code")
def map_code(
    code: Annotated[str, typer.Argument(help='The local code, "system|code".')],
    concept: Annotated[str, typer.Argument(help="A concept id from concepts.toml, e.g. creatinine.")],
    site: SiteArgument,
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    deliver: DeliverOption = True,
    actor: common.ActorOption = None,
) -> None:
    """Map a site's local code to a catalog concept, re-map, and report."""
    _run_fix(
        config_path,
        deliver,
        lambda config, sessions: fixes.map_code(
            config, sessions, site, code, concept, actor=common.actor_name(actor)
        ),
    )


@app.command("accept")
def accept(
    issue_key: Annotated[str, typer.Argument(help="The unknown_code issue, as `issues list` shows its key.")],
    concept: Annotated[
        str | None, typer.Option("--concept", help="Accept this suggested concept instead of the best one.")
    ] = None,
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    deliver: DeliverOption = True,
    actor: common.ActorOption = None,
) -> None:
    """Accept the suggested concept for an unknown code: `map code`, with the suggestion audited.

    \b
    `trial-adapter issues show KEY` lists the suggestions and their evidence;
    this maps the issue's code to the best one (or to --concept, which must
    be among them), re-maps and reports, exactly as `map code` does.  The
    audit entry also records that it was suggested, its score and evidence.
    Exit 2 when the issue is not an open unknown_code issue, has no
    suggestion, or --concept is not suggested: then use `map code`.

    \b
    Example:
      trial-adapter map accept 'demo-east|unknown_code|code:http://hospital-east.example/fhir/lis|0082'
    """

    def fix(config: config_mod.Config, sessions: sessionmaker[Session]) -> actions.FixResult:
        who = common.actor_name(actor)
        accepted, result = suggestions.accept(config, sessions, issue_key, concept, actor=who)
        chosen = accepted.suggestion
        said = f"{chosen.concept} ({chosen.label}, {chosen.percent} %)"
        common.console.print(
            f"Accepted the suggestion {said} for {accepted.code}:", highlight=False, soft_wrap=True
        )
        for sentence in chosen.evidence:
            common.console.print(f"  - {sentence}", highlight=False, soft_wrap=True)
        return result

    _run_fix(config_path, deliver, fix)


@app.command("unit")
def map_unit(
    spelling: Annotated[str, typer.Argument(help="The unit as the site spells it, e.g. umol/l.")],
    ucum: Annotated[str, typer.Argument(help="The UCUM unit it means, e.g. umol/L.")],
    site: SiteArgument,
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    deliver: DeliverOption = True,
    actor: common.ActorOption = None,
) -> None:
    """Read a site's unit spelling as a UCUM unit, re-map, and report."""
    _run_fix(
        config_path,
        deliver,
        lambda config, sessions: fixes.map_unit(
            config, sessions, site, spelling, ucum, actor=common.actor_name(actor)
        ),
    )


@app.command("ignore-code")
def ignore_code(
    code: Annotated[str, typer.Argument(help='The local code, "system|code".')],
    site: SiteArgument,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why it is not a protocol concept.")],
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    deliver: DeliverOption = True,
    actor: common.ActorOption = None,
) -> None:
    """List a local code under [ignored_codes] (not a protocol concept), re-map, and report."""
    _run_fix(
        config_path,
        deliver,
        lambda config, sessions: fixes.ignore_code(
            config, sessions, site, code, reason, actor=common.actor_name(actor)
        ),
    )


@app.command("undo")
def undo(
    audit_id: Annotated[int, typer.Argument(help="The audit entry to reverse.")],
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    deliver: DeliverOption = True,
    actor: common.ActorOption = None,
) -> None:
    """Reverse a mapping fix or an ignored issue, by its audit entry."""
    _run_fix(
        config_path,
        deliver,
        lambda config, sessions: undoing.undo(config, sessions, audit_id, actor=common.actor_name(actor)),
    )
