"""Name -> sink: the config's ``[repository]`` kind picks the writer (cumulus-etl ``formats/factory.py``)."""

from __future__ import annotations

from collections.abc import Callable

from adapter.sinks import settings
from adapter.sinks.base import Sink
from adapter.sinks.fhir import FhirSink
from adapter.sinks.file import FileSink
from adapter.sinks.http import HttpSink
from adapter.sinks.redcap import RedcapSink


def make_sink(
    repository: settings.RepositoryConfig, *, should_stop: Callable[[], bool] | None = None
) -> Sink:
    """The sink the config asks for.

    Network sinks read their credentials on first use, so building one (for
    ``push --dry-run``, say) needs no token; a missing token surfaces as a
    ConfigError on the first delivery.  ``should_stop`` (the service's stop
    flag) lets the ``http`` sink, which sends one request per item, end a
    batch between requests; the others send a batch in a few requests and
    leave stopping to the outbox, between batches.
    """
    if isinstance(repository, settings.FileRepository):
        return FileSink(repository.path)
    if isinstance(repository, settings.HttpRepository):
        return HttpSink(repository, should_stop=should_stop)
    if isinstance(repository, settings.FhirRepository):
        return FhirSink(repository)
    return RedcapSink(repository)


def describe(repository: settings.RepositoryConfig) -> str:
    """Where the records go, for people: the folder or the URL."""
    if isinstance(repository, settings.FileRepository):
        return str(repository.path)
    return repository.url
