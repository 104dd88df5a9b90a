"""``trial-adapter accept-retraction``: a person's yes to a retraction the guard held back."""

from __future__ import annotations

from typing import Annotated

import typer

from adapter.cli import common
from adapter.store import db
from adapter.sync import MAPPED_TYPES, retraction_guard


def accept_retraction(
    site: Annotated[str, typer.Option("--site", "-s", help="The site whose retraction was held back.")],
    resource_type: Annotated[
        str,
        typer.Option(
            "--type",
            "-t",
            help=f"The resource type held back: {', '.join(MAPPED_TYPES)}.",
            show_default=False,
        ),
    ],
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="How you know the site really deleted them (audited).")
    ],
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    actor: common.ActorOption = None,
) -> None:
    """Accept that a site really deleted the resources a sync held back, so the next sync retracts them.

    A pass that would retract all, or more than [sync] max_retraction_share,
    of a site's stored resources of one type retracts none of them, opens a
    retraction_held issue and exits 8: an emptied export file looks exactly
    like a mass deletion.  If the deletion is real, accept it here; the next
    sync of the site (scheduled, or `trial-adapter sync --site SITE` now)
    retracts up to the number held back now, and the approval is used up.
    If the export was broken instead, fix it: the next sync finds the
    resources again and the issue resolves by itself.
    """
    with common.reported_errors():
        config = common.load_config(config_path)
        config.site(site)
        sessions = db.open_store(config.store.url)
        actor_name = common.actor_name(actor)
        accepted = retraction_guard.accept(sessions, site, resource_type, reason, actor=actor_name)
    common.console.print(
        f"Accepted: the next sync of {site} retracts up to {accepted.max_count} "
        f"{resource_type} resource(s) the source no longer lists. "
        f"Run it now with `trial-adapter sync --site {site}`"
        + (f" -c {config_path}" if config_path != common.DEFAULT_CONFIG else "")
        + ".",
        highlight=False,
        soft_wrap=True,
    )
