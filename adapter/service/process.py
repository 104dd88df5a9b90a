"""What the service needs from the process it runs in: signals, log routing, failure logs.

Kept apart from the service's life cycle (``daemon``) because these touch
process-wide state (signal handlers, the ``apscheduler`` logger) that only
the ``run`` command should set, never a test or an embedding program.
"""

from __future__ import annotations

import logging
import signal
import time
import traceback
from collections.abc import Callable
from types import FrameType

from adapter import errors

log = logging.getLogger("adapter.service.daemon")


def log_failure(name: str, exc: Exception, started: float, *, site: str | None = None) -> None:
    """Log a failed job without PHI.

    An ``AdapterError`` message is written to be safe and to name the fix.
    Anything else is a bug whose message could quote resource content (a
    ``KeyError`` of a value, a driver error echoing a row), so only its type
    and where it was raised are logged.
    """
    fields: dict[str, object] = {"job": name, "seconds": round(time.monotonic() - started, 3)}
    if site is not None:
        fields["site"] = site
    if isinstance(exc, errors.AdapterError):
        fields.update(error=str(exc), exit_code=exc.exit_code)
        log.error("job failed", extra=fields)
        return
    frames = traceback.extract_tb(exc.__traceback__)
    fields.update(
        error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        where=[f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}" for frame in frames[-6:]],
    )
    log.error("job crashed; it runs again at its next turn", extra=fields)


def install_signal_handlers(request_stop: Callable[[], None], request_reload: Callable[[], None]) -> None:
    """SIGTERM and SIGINT stop the service; SIGHUP reloads its config (main thread only)."""

    def stop(_signum: int, _frame: FrameType | None) -> None:
        request_stop()

    def reload(_signum: int, _frame: FrameType | None) -> None:
        request_reload()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, reload)


def route_scheduler_logs() -> None:
    """APScheduler's warnings (skipped or missed runs) go to the adapter's log, in its format."""
    ours = logging.getLogger("adapter")
    theirs = logging.getLogger("apscheduler")
    theirs.handlers[:] = ours.handlers
    theirs.setLevel(max(ours.level, logging.WARNING))
    theirs.propagate = False
