"""Source settings -> data source: the ``[sites.source]`` kind picks the reader.

``ndjson`` reads a folder, ``fhir-rest`` the site's search API, ``fhir-bulk``
its Bulk Data export.  Building a source is cheap and offline; the network
and the files are touched on first use.  ``BUILDERS`` is the one list of
kinds: a new kind of source is its own module, its settings model in
``adapter.fhir.settings`` and one line there.

The factory takes a kind's settings model, not the site config: what a
source asks for (its roster's patients, the ``Wanted`` codes) comes from the
caller, which knows the catalog; the source stage does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from adapter import roster as roster_mod
from adapter.fhir import bulk_source, rest
from adapter.fhir import settings as fhir_settings
from adapter.fhir.ndjson import NdjsonFolderSource
from adapter.fhir.source import Source
from adapter.fhir.wanted import Wanted


class SourceSettings(Protocol):
    """Any kind's ``[sites.source]`` settings: ``kind`` picks the builder."""

    @property
    def kind(self) -> str: ...


@dataclass(frozen=True)
class SourceRequest:
    """What every builder gets besides its kind's settings."""

    site: str
    roster: roster_mod.Roster  # the patients to read
    wanted: Wanted  # the codes to ask for
    work_dir: Path | None = None  # a folder for the source's own files instead of the configured one


def _ndjson(settings: fhir_settings.NdjsonSource, _request: SourceRequest) -> Source:
    return NdjsonFolderSource(settings.path, max_resource_bytes=settings.max_resource_bytes)


def _rest(settings: fhir_settings.RestSource, request: SourceRequest) -> Source:
    return rest.RestSearchSource(request.site, settings, roster=request.roster, wanted=request.wanted)


def _bulk(settings: fhir_settings.BulkSource, request: SourceRequest) -> Source:
    if request.work_dir is not None:
        settings = settings.model_copy(update={"work_dir": request.work_dir})
    return bulk_source.BulkExportSource(request.site, settings)


Builder = Callable[[Any, SourceRequest], Source]
BUILDERS: dict[str, Builder] = {
    "ndjson": _ndjson,
    "fhir-rest": _rest,
    "fhir-bulk": _bulk,
}


def make_source(
    site_id: str,
    settings: SourceSettings,
    *,
    roster: roster_mod.Roster,
    wanted: Wanted,
    work_dir: Path | None = None,
) -> Source:
    """The source for one site, reading the caller's ``roster`` patients and ``wanted`` codes.

    The caller (the sync's ``SiteSetup``) has loaded and checked the roster
    and the catalog already, so they are passed in rather than loaded here
    again: one load per pass, and the codes a pass searches for are the codes
    it maps with.  ``work_dir`` gives a source that keeps files of its own (a
    Bulk export) another folder, so a one-off read leaves the sync's alone.
    """
    return BUILDERS[settings.kind](settings, SourceRequest(site_id, roster, wanted, work_dir))
