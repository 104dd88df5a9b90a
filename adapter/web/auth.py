"""Who is asking, and may they do this?  FastAPI dependencies for every view.

Three roles (``accounts.Role``): viewers look, data managers also fix, admins
also manage users.  Pages that change something depend on ``fixer`` or
``admin``; a viewer gets 403 on every write, and the tests post to every
write route as a viewer to keep it so.  The session middleware
(``app._sessions``) has already put the browser's session on
``request.state.session``, with a user only while its server-side session
lives (not logged out, not idle, password unchanged; ``sessions.is_live``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from adapter.store import models
from adapter.web import context
from adapter.web.accounts import Role, role_of
from adapter.web.sessions import ConsoleSession


class LoginRequired(Exception):
    """No valid login: GET pages redirect to the login form, writes answer 401."""


class Forbidden(Exception):
    """Logged in, but the role does not allow this."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Operator:
    """The logged-in user as the views need them."""

    id: int
    username: str
    role: Role

    @property
    def can_fix(self) -> bool:
        return self.role.can_fix


def browser_session(request: Request) -> ConsoleSession:
    session: ConsoleSession = request.state.session
    return session


def optional_operator(request: Request, db: Annotated[Session, Depends(context.db)]) -> Operator | None:
    """The logged-in, enabled user of a live session (checked by the middleware); else None."""
    session = browser_session(request)
    if session.user_id is None:
        return None
    user = db.get(models.User, session.user_id)
    if user is None or user.disabled:
        return None
    return Operator(id=user.id, username=user.username, role=role_of(user))


def operator(current: Annotated[Operator | None, Depends(optional_operator)]) -> Operator:
    if current is None:
        raise LoginRequired
    return current


def fixer(current: Annotated[Operator, Depends(operator)]) -> Operator:
    if not current.role.can_fix:
        raise Forbidden(
            f"Your role ({current.role.value}) can look at everything but change nothing. "
            "Ask an admin for the data_manager role if you need to fix mappings."
        )
    return current


def admin(current: Annotated[Operator, Depends(operator)]) -> Operator:
    if not current.role.is_admin:
        raise Forbidden("Only admins manage users.")
    return current


AnyUser = Annotated[Operator, Depends(operator)]
Fixer = Annotated[Operator, Depends(fixer)]
Admin = Annotated[Operator, Depends(admin)]
