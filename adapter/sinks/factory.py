"""Name -> sink: the config's [repository] kind picks the writer."""

from __future__ import annotations

from adapter.config import RepositoryConfig
from adapter.sinks.base import Sink
from adapter.sinks.file import FileSink


def make_sink(repository: RepositoryConfig) -> Sink:
    """The sink the config asks for (only ``file`` so far; see issue 6 for the rest)."""
    return FileSink(repository.path)
