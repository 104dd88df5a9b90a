"""Who acted: the one rule for user and actor names.

A name reaches places where a line break or a control character does
damage: the ``# by <actor>, <date>`` comment a fix adds to the site's
override file (a newline there writes extra lines into the file), log lines,
the audit log and the CSV a monitor opens.  So every name is checked against
one pattern before it is used: console user names (``trial-adapter users
add``), ``--as`` on the command line, and again by ``adapter.reconciliation`` before
it writes a file (defence in depth).

The check is a full match (``re.fullmatch``): ``re.match`` with ``$`` accepts
a name that ends in a newline, because ``$`` also matches before a final
``\\n``.
"""

from __future__ import annotations

import getpass
import re

from adapter import errors

# A console user: letters, digits and . _ @ - (e-mail addresses fit), at most 100 characters.
USER_NAME = r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}"
# An actor in the audit log: a user name, or ``cli:<name>`` for a person at the command line.
ACTOR_NAME = rf"(?:cli:)?{USER_NAME}"
RULE = "letters, digits and . _ @ - (starting with a letter or digit, at most 100 characters)"

_USER = re.compile(USER_NAME)
_ACTOR = re.compile(ACTOR_NAME)
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9._@-]")


class BadName(errors.AdapterError):
    """A user or actor name that breaks the rule; the message says which and why."""

    exit_code = errors.EXIT_USAGE


def is_user_name(name: object) -> bool:
    return isinstance(name, str) and _USER.fullmatch(name) is not None


def is_actor(name: object) -> bool:
    return isinstance(name, str) and _ACTOR.fullmatch(name) is not None


def check_user_name(name: str) -> str:
    """``name`` if it is a valid user name, else ``BadName``."""
    if not is_user_name(name):
        raise BadName(f"user name {name!r}: use {RULE}")
    return name


def check_actor(name: str) -> str:
    """``name`` if it is a valid actor (a user name, or ``cli:`` and one), else ``BadName``."""
    if not is_actor(name):
        raise BadName(f"actor {name!r}: use a user name of {RULE}, optionally after cli:")
    return name


def operating_system_actor() -> str:
    """``cli:<the operating-system user>``, the default actor of a command.

    The login name comes from the environment (``LOGNAME``, ``USER``), so it
    is cleaned rather than trusted: characters outside the rule become ``_``.
    """
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        return "cli"
    cleaned = _NOT_ALLOWED.sub("_", login)[:100]
    return f"cli:{cleaned}" if is_user_name(cleaned) else "cli"
