"""Console users: local accounts with argon2 password hashes and a role.

Sites often run the adapter on a machine without a directory service, so
users are local rows in the state database (``models.User``), created by
``trial-adapter users add``.  Passwords are stored only as argon2id hashes
(RFC 9106, the OWASP first choice); a hash made with older parameters is
re-hashed on the next successful login.  Every change is audited.  A new
password and ``disable`` revoke the user's console sessions in the same
transaction (``sessions.end_all``), so they end in a running console at once;
a role change does not need to, the role is read on every request.
"""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from adapter import actors, errors
from adapter.store import models, state
from adapter.web import sessions

MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()
# Verifying against this when the user does not exist costs the same time as
# a real check, so response times do not tell which user names exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password-only-for-timing")


class Role(StrEnum):
    """What a user may do: look, fix mappings, or also manage users."""

    VIEWER = "viewer"
    DATA_MANAGER = "data_manager"
    ADMIN = "admin"

    @property
    def can_fix(self) -> bool:
        return self in (Role.DATA_MANAGER, Role.ADMIN)

    @property
    def is_admin(self) -> bool:
        return self is Role.ADMIN

    @property
    def sees_source_refs(self) -> bool:
        """Viewers see source references only as the keyed hashes that leave the site."""
        return self.can_fix


class AccountError(errors.AdapterError):
    """A user could not be created or changed; the message says why."""

    exit_code = errors.EXIT_USAGE


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")
    if password.strip() != password:
        raise AccountError("the password must not start or end with spaces (a copy-paste slip?)")


def add_user(session: Session, username: str, password: str, role: Role, *, actor: str) -> models.User:
    """Create a user; the caller commits."""
    if not actors.is_user_name(username):  # the one rule for names (adapter.actors), full match
        raise AccountError(f"user name {username!r}: use {actors.RULE}")
    if find_user(session, username) is not None:
        raise AccountError(f"user {username!r} exists; use `trial-adapter users passwd` to change it")
    check_password_strength(password)
    user = models.User(username=username, password_hash=_hasher.hash(password), role=role.value)
    session.add(user)
    state.audit(session, actor, "user.add", f"user:{username}", role=role.value)
    return user


def set_password(session: Session, username: str, password: str, *, actor: str) -> None:
    user = _existing(session, username)
    check_password_strength(password)
    user.password_hash = _hasher.hash(password)
    ended = sessions.end_all(session, user.id, "password")
    state.audit(session, actor, "user.password", f"user:{username}", sessions_ended=ended)


def set_role(session: Session, username: str, role: Role, *, actor: str) -> None:
    user = _existing(session, username)
    before, user.role = user.role, role.value
    state.audit(session, actor, "user.role", f"user:{username}", before=before, after=role.value)


def set_disabled(session: Session, username: str, disabled: bool, *, actor: str) -> None:
    """Disable (or enable) a login; a disabled user's open sessions stop working at once."""
    user = _existing(session, username)
    before, user.disabled = user.disabled, disabled
    action = "user.disable" if disabled else "user.enable"
    detail: dict[str, object] = {"before": before, "after": disabled}
    if disabled:  # enabling again does not bring old sessions back
        detail["sessions_ended"] = sessions.end_all(session, user.id, "disabled")
    state.audit(session, actor, action, f"user:{username}", **detail)


def find_user(session: Session, username: str) -> models.User | None:
    return session.scalar(sa.select(models.User).where(models.User.username == username))


def list_users(session: Session) -> list[models.User]:
    return list(session.scalars(sa.select(models.User).order_by(models.User.username)))


def authenticate(session: Session, username: str, password: str) -> models.User | None:
    """The enabled user with this name and password, else None (in constant-ish time)."""
    user = find_user(session, username)
    if user is None or user.disabled:
        _verify(_DUMMY_HASH, password)
        return None
    if not _verify(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def role_of(user: models.User) -> Role:
    try:
        return Role(user.role)
    except ValueError:
        return Role.VIEWER  # an unknown role written by hand gets the least rights


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _existing(session: Session, username: str) -> models.User:
    user = find_user(session, username)
    if user is None:
        raise AccountError(f"no user {username!r}; `trial-adapter users list` shows them")
    return user
