"""Users (admins only): who can log in, with which role; disable and enable.

Users are created on the command line (``trial-adapter users add``), where
the password can come from a prompt or a file instead of a web form; here an
admin sees everyone and can switch a login off at once, e.g. when someone
leaves the study team.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from adapter.web import accounts, context, render
from adapter.web.auth import Admin

router = APIRouter()


@router.get("/users")
def users(request: Request, user: Admin, db: Annotated[Session, Depends(context.db)]) -> Response:
    return render.page(request, "users.html", user, title="Users", nav="users", users=accounts.list_users(db))


@router.post("/users/{username}/disable")
def disable(
    request: Request,
    username: str,
    user: Admin,
    db: Annotated[Session, Depends(context.db)],
    disabled: Annotated[bool, Form()] = True,
) -> Response:
    if username == user.username and disabled:
        return render.page(
            request,
            "users.html",
            user,
            status_code=409,
            title="Users",
            nav="users",
            users=accounts.list_users(db),
            error="You cannot disable your own login.",
        )
    try:
        accounts.set_disabled(db, username, disabled, actor=user.username)
    except accounts.AccountError as exc:
        return render.page(
            request,
            "users.html",
            user,
            status_code=409,
            title="Users",
            nav="users",
            users=accounts.list_users(db),
            error=str(exc),
        )
    db.commit()
    return RedirectResponse("/users", status_code=303)
