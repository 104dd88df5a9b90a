"""Fixtures for the FHIR source tests: a real server (sekmet) with the demo sites, a mocked client."""

from __future__ import annotations

import random
from typing import Any

import pytest

from adapter import job, paths
from adapter.fhir import http

from fhirserver import FhirServer, fhir_server, fhir_server_factory  # noqa: F401
from fhirtesting import BASE, Sleeps, demo_config
from golden import repository_records


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
