"""Exit codes and the library's exception tree, in one place.

Exit codes are a stable contract with the scripts and schedulers site IT
teams wrap around the adapter (idea from cumulus-etl ``errors.py``): a number,
once given a meaning, is never reused for another.  Library code raises
``AdapterError`` subclasses; only the CLI turns them into exit codes, via
``fatal()``, which raises a ``SystemExit`` subclass so tests can catch it and
progress bars get to finish drawing.
"""

from __future__ import annotations

from typing import NoReturn

# Stable exit codes.  Never renumber; retire instead.
EXIT_OK = 0
EXIT_UNEXPECTED = 1  # a bug: please report with the log
EXIT_USAGE = 2  # typer/click usage error (bad flag)
EXIT_CONFIG = 3  # the TOML config is missing, unreadable or invalid
EXIT_MAPPING = 4  # the mapping catalog or a site override is invalid
EXIT_SOURCE = 5  # the site's data could not be read
EXIT_STORE = 6  # the state database could not be opened or migrated
EXIT_DELIVERY = 7  # the trial repository could not be written
EXIT_RETRACTION_HELD = 8  # a pass would have retracted all or most of a type; held back for a person
EXIT_SERVER_FAULT = 9  # the site's server answered another question than the one asked
EXIT_ISSUES_OPEN = 10  # run finished, but with open issues and --fail-on-issues


class AdapterError(Exception):
    """Base of every error the adapter expects and explains."""

    exit_code = EXIT_UNEXPECTED


class ConfigError(AdapterError):
    """The config file is wrong; the message names the file, the key and the fix."""

    exit_code = EXIT_CONFIG


class MappingError(AdapterError):
    """A mapping file is wrong; the message names the file, the key and the reason."""

    exit_code = EXIT_MAPPING


class SourceError(AdapterError):
    """Site data could not be read (missing folder, unreadable file)."""

    exit_code = EXIT_SOURCE


class NetworkError(SourceError):
    """Talking to a site's FHIR server failed; ``status`` is the HTTP status, if any came back.

    The split into temporary and fatal follows cumulus-fhir-support ``http.py``:
    the first may pass if retried later, the second needs a person.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TemporaryNetworkError(NetworkError):
    """Timeouts, dropped connections, 408/429/5xx: still failing after the retries allowed."""


class FatalNetworkError(NetworkError):
    """A failure retrying cannot fix (400, 403, 404, ...): the message says what to change."""


class ServerFault(SourceError):
    """The site's server answered a search with results the search did not ask for.

    A patient outside the searched batch, a code outside the searched codes,
    another resource type, a result older than the asked ``_lastUpdated``, a
    next link that lost the search's parameters: the server answered another
    question, so its answer cannot be trusted to be complete either.  The
    page is not stored, the pass stops, what earlier pages committed stays.
    ``fault`` names the kind (a metric label, a stable word), ``setting``
    the source setting that adapts to it, if one does.
    """

    exit_code = EXIT_SERVER_FAULT

    def __init__(self, message: str, *, fault: str, resource_type: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.fault = fault
        self.resource_type = resource_type
        self.setting = setting


class AuthError(SourceError):
    """The adapter could not authenticate to a site (bad key, unknown client, token refused)."""


class StoreError(AdapterError):
    """The state database could not be opened or migrated."""

    exit_code = EXIT_STORE


class FatalExit(SystemExit):
    """Raised by ``fatal``; carries the message for the CLI to print."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(code)
        self.message = message


def fatal(message: str, code: int) -> NoReturn:
    """Stop the command with a message and a stable exit code."""
    raise FatalExit(message, code)
