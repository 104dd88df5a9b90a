"""What every request of the console shares: config, store, secrets, limits.

Built once by ``app.create_app`` and kept on ``app.state.console``; views
reach it through ``context.of(request)`` instead of module globals, so tests
can run several consoles (on several state databases) in one process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from adapter import config as config_mod
from adapter.web.issue_tokens import IssueTokens
from adapter.web.jobs import JobRunner
from adapter.web.sessions import SessionCodec
from adapter.web.throttle import LoginThrottle


@dataclass
class Console:
    config: config_mod.Config
    sessions: sessionmaker[Session]
    codec: SessionCodec
    site_secret: bytes  # keys the hashes viewers see instead of source references
    throttle: LoginThrottle
    tokens: IssueTokens
    jobs: JobRunner  # the fixes running in the background (``jobs``)


def of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def db(request: Request) -> Iterator[Session]:
    """A read session for one request (writes go through ``adapter.reconciliation``)."""
    with of(request).sessions() as session:
        yield session
