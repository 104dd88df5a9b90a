"""``trial-adapter users``: console accounts (add, list, passwd, role, disable, enable).

Passwords never go on the command line (they would land in shell history
and the process list): they come from a hidden prompt, or from a file with
``--password-file`` for provisioning scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from adapter import actors, errors
from adapter.cli import common
from adapter.cli.console_cmd import DemoOption, config_or_demo
from adapter.store import db
from adapter.web import accounts

app = typer.Typer(
    help="Manage console users (local accounts with argon2 password hashes).", no_args_is_help=True
)

RoleOption = Annotated[
    accounts.Role, typer.Option("--role", "-r", help="viewer (look), data_manager (fix), admin (also users).")
]
PasswordFile = Annotated[
    Path | None,
    typer.Option(
        "--password-file", help="Read the password from this file (first line) instead of a prompt."
    ),
]


def _actor() -> str:
    return actors.operating_system_actor()


def _password(path: Path | None) -> str:
    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            errors.fatal(f"--password-file {path}: cannot read it ({exc.strerror or exc})", errors.EXIT_USAGE)
        return lines[0] if lines else ""
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@app.command("add")
def add(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: RoleOption = accounts.Role.VIEWER,
    password_file: PasswordFile = None,
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    demo: DemoOption = False,
) -> None:
    """Create a console user with a role."""
    with common.reported_errors():
        sessions = db.open_store(config_or_demo(config_path, demo).store.url)
        password = _password(password_file)
        with sessions.begin() as session:
            accounts.add_user(session, username, password, role, actor=_actor())
        common.console.print(f"added {username} ({role.value})")


@app.command("passwd")
def passwd(
    username: str,
    password_file: PasswordFile = None,
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    demo: DemoOption = False,
) -> None:
    """Set a new password (ends that user's console sessions)."""
    with common.reported_errors():
        sessions = db.open_store(config_or_demo(config_path, demo).store.url)
        password = _password(password_file)
        with sessions.begin() as session:
            accounts.set_password(session, username, password, actor=_actor())
        common.console.print(f"new password set for {username}")


@app.command("role")
def role(
    username: str,
    new_role: Annotated[accounts.Role, typer.Argument(help="viewer, data_manager or admin.")],
    config_path: common.ConfigOption = common.DEFAULT_CONFIG,
    demo: DemoOption = False,
) -> None:
    """Change a user's role."""
    with common.reported_errors():
        sessions = db.open_store(config_or_demo(config_path, demo).store.url)
        with sessions.begin() as session:
            accounts.set_role(session, username, new_role, actor=_actor())
        common.console.print(f"{username} is now {new_role.value}")


@app.command("disable")
def disable(
    username: str, config_path: common.ConfigOption = common.DEFAULT_CONFIG, demo: DemoOption = False
) -> None:
    """Stop a user from logging in (their open sessions end at once)."""
    _set_disabled(username, True, config_path, demo)


@app.command("enable")
def enable(
    username: str, config_path: common.ConfigOption = common.DEFAULT_CONFIG, demo: DemoOption = False
) -> None:
    """Let a disabled user log in again."""
    _set_disabled(username, False, config_path, demo)


@app.command("list")
def list_users(config_path: common.ConfigOption = common.DEFAULT_CONFIG, demo: DemoOption = False) -> None:
    """Every console user with role and state."""
    with common.reported_errors():
        sessions = db.open_store(config_or_demo(config_path, demo).store.url)
        with sessions() as session:
            users = accounts.list_users(session)
        table = Table(title="Console users", title_justify="left")
        for column in ("user", "role", "login", "created"):
            table.add_column(column)
        for user in users:
            table.add_row(
                user.username,
                user.role,
                "disabled" if user.disabled else "enabled",
                f"{user.created_at:%Y-%m-%d}",
            )
        common.console.print(table)


def _set_disabled(username: str, disabled: bool, config_path: Path, demo: bool) -> None:
    with common.reported_errors():
        sessions = db.open_store(config_or_demo(config_path, demo).store.url)
        with sessions.begin() as session:
            accounts.set_disabled(session, username, disabled, actor=_actor())
        common.console.print(f"{username} {'disabled' if disabled else 'enabled'}")
