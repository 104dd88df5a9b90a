"""Fixtures for the FHIR source tests: a real server (sekmet) with the demo sites, a mocked client."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from adapter import paths
from adapter.fhir import http
from adapter.service import job

from fhirserver import FhirServer, FhirServerFactory, fhir_server, fhir_server_factory  # noqa: F401
from fhirtesting import BASE, Sleeps, demo_config
from golden import repository_records
from quirkproxy import QuirkServer, start_quirk_server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(sleeps: Sleeps) -> http.FhirClient:
    """A client for a mocked server (use ``responses``); retries wait on ``sleeps``, not the clock."""
    return http.FhirClient("test-site", BASE, sleep=sleeps, rng=random.Random(7))


@pytest.fixture(scope="session")
def demo_server(fhir_server: FhirServer) -> FhirServer:  # noqa: F811
    """The session server holding both bundled demo sites (read-only for tests)."""
    for site in ("demo-north", "demo-east"):
        fhir_server.load_ndjson(paths.demo_data_dir() / site)
    return fhir_server


@pytest.fixture(scope="session")
def ndjson_records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """What the NDJSON folder source delivers per demo site: the reference for server sources."""
    result = {}
    for site in ("demo-north", "demo-east"):
        config = demo_config(tmp_path_factory.mktemp(f"ndjson-{site}"), (site,))
        job.run_once(config, config.sites)
        result[site] = repository_records(config)
    return result


@pytest.fixture(scope="session")
def quirk_backend(fhir_server_factory: FhirServerFactory) -> Iterator[QuirkServer]:  # noqa: F811
    """One server with both demo sites and extra non-roster patients, behind a quirk proxy (read-only)."""
    site = start_quirk_server(fhir_server_factory, paths.demo_data_dir())
    try:
        yield site
    finally:
        site.proxy.stop()  # the factory stops the server


@pytest.fixture
def quirk_server(quirk_backend: QuirkServer) -> Iterator[QuirkServer]:
    """The quirk server with every quirk off and the counts cleared; switch quirks on in the test.

    ``.url`` (the base URL through the proxy), ``.quirks`` (a live ``Quirks``),
    ``.injected`` / ``.requests`` / ``.added`` (what the proxy did), ``.reset()``;
    ``.roster_patients``, ``.foreign_patients`` and ``.foreign`` name the data.
    """
    quirk_backend.reset()
    yield quirk_backend
    quirk_backend.reset()
