"""Console users: local accounts with argon2 password hashes and a role.

Sites often run the adapter on a machine without a directory service, so
users are local rows in the state database (``models.User``), created by
``trial-adapter users add``.  Passwords are stored only as argon2id hashes
(RFC 9106, the OWASP first choice); a hash made with older parameters is
re-hashed on the next successful login.  Every change is audited.
"""

from __future__ import annotations

import re
from enum import StrEnum

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from adapter import errors
from adapter.store import models, state

MIN_PASSWORD_LENGTH = 10
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$"

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
    if not re.match(USERNAME_PATTERN, username):
        raise AccountError(
            f"user name {username!r}: use letters, digits and . _ @ - (at most 100 characters)"
        )
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
    state.audit(session, actor, "user.password", f"user:{username}")


def set_role(session: Session, username: str, role: Role, *, actor: str) -> None:
    user = _existing(session, username)
    before, user.role = user.role, role.value
    state.audit(session, actor, "user.role", f"user:{username}", before=before, after=role.value)


def set_disabled(session: Session, username: str, disabled: bool, *, actor: str) -> None:
    """Disable (or enable) a login; a disabled user's open sessions stop working at once."""
    user = _existing(session, username)
    before, user.disabled = user.disabled, disabled
    action = "user.disable" if disabled else "user.enable"
    state.audit(session, actor, action, f"user:{username}", before=before, after=disabled)


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
