"""``trial-adapter db``: the state database's schema."""

from __future__ import annotations

import sqlalchemy as sa
import typer
from sqlalchemy.orm import sessionmaker

from adapter.cli import common
from adapter.delivery import redelivery
from adapter.store import db, schema

app = typer.Typer(help="The state database: schema migrations.", no_args_is_help=True)


def _shown(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


@app.command("upgrade")
def upgrade(config_path: common.ConfigOption = common.DEFAULT_CONFIG) -> None:
    """Migrate the state database to this adapter version's schema.

    Every command also migrates on start; run this after an upgrade to do it
    at a moment of your choosing (after the backup) and see that it worked.
    Deliveries made before the state recorded repositories are attributed
    to the [repository] configured now (see `trial-adapter push --resend`).
    """
    with common.reported_errors():
        config = common.load_config(config_path)
        engine = db.create_engine(config.store.url)
        before, head = schema.revisions(engine)
        schema.upgrade(engine)
        after, _ = schema.revisions(engine)
        redelivery.note(config, sessionmaker(engine, expire_on_commit=False))
        engine.dispose()
        if before == after:
            common.console.print(
                f"{_shown(config.store.url)}: already at revision {after} (latest)", soft_wrap=True
            )
        else:
            common.console.print(
                f"{_shown(config.store.url)}: migrated from revision {before or '(empty)'} "
                f"to {after} (latest {head})",
                soft_wrap=True,
            )


@app.command("current")
def current(config_path: common.ConfigOption = common.DEFAULT_CONFIG) -> None:
    """Show the database's schema revision and the newest this adapter knows, changing nothing."""
    with common.reported_errors():
        config = common.load_config(config_path)
        engine = db.create_engine(config.store.url)
        revision, head = schema.revisions(engine)
        engine.dispose()
        note = "up to date" if revision == head else "run `trial-adapter db upgrade`"
        common.console.print(
            f"{_shown(config.store.url)}: revision {revision or '(empty)'}, latest {head}: {note}",
            soft_wrap=True,
        )
