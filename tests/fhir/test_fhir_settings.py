"""The fhir-rest / fhir-bulk config tables: paths resolved, errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapter import config as config_mod
from adapter import errors, paths
from adapter import roster as roster_mod
from adapter.fhir import connect, factory, rest
from adapter.fhir import settings as fhir_settings
from adapter.mapping import catalog as catalog_mod
from adapter.mapping import discovery


def load(tmp_path: Path, source: dict[str, Any], **top: Any) -> config_mod.Config:
    raw = {
        "sites": [{"id": "site-a", "timezone": "UTC", "roster": "roster.csv", "source": source}],
        "repository": {"kind": "file", "path": "out"},
        **top,
    }
    return config_mod.config_from_dict(raw, base_dir=tmp_path)


def test_rest_source_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        {
            "kind": "fhir-rest",
            "base_url": "https://ehr.example.org/fhir",
            "auth": {"kind": "smart-backend", "client_id": "adapter", "key_file": "secrets/key.json"},
            "tls": {"ca_bundle": "ca.pem", "client_cert": "client.pem", "client_key": "client.key"},
        },
        study={"mappings": "maps"},
    )
    source = config.sites[0].source
    assert isinstance(source, fhir_settings.RestSource)
    assert isinstance(source.auth, fhir_settings.SmartBackendAuth)
    assert source.auth.key_file == tmp_path / "secrets" / "key.json"
    assert source.tls.ca_bundle == tmp_path / "ca.pem" and source.tls.client_key == tmp_path / "client.key"
    catalog = catalog_mod.load_catalog(paths.default_mappings_dir(), "site-a")
    site = config.sites[0]
    wanted = discovery.source_wanted(catalog)
    built = factory.make_source(site.id, site.source, roster=roster_mod.Roster([]), wanted=wanted)
    assert isinstance(built, rest.RestSearchSource)  # offline, cheap


def test_bulk_work_dir_resolves(tmp_path: Path) -> None:
    config = load(tmp_path, {"kind": "fhir-bulk", "base_url": "https://ehr/fhir", "work_dir": "exports"})
    source = config.sites[0].source
    assert isinstance(source, fhir_settings.BulkSource) and source.work_dir == tmp_path / "exports"
    assert source.group_id is None


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            {
                "kind": "fhir-rest",
                "base_url": "https://x/fhir",
                "auth": {"kind": "bearer", "token_env": "T", "token_file": "f"},
            },
            "source.auth: set exactly one of token_env (environment variable) or token_file (file)",
        ),
        (
            {"kind": "fhir-rest", "base_url": "https://x/fhir", "auth": {"kind": "oauth-magic"}},
            "source.auth: kind 'oauth-magic' is not supported here",
        ),
        (
            {"kind": "fhir-rest", "base_url": "https://x/fhir", "tls": {"client_key": "k.pem"}},
            "source.tls: client_key is set but client_cert is not",
        ),
        (
            {
                "kind": "fhir-rest",
                "base_url": "https://x/fhir",
                "tls": {"verify": False, "ca_bundle": "ca.pem"},
            },
            "source.tls: ca_bundle is set but verify = false, which checks no certificate at all; remove "
            "verify = false",
        ),
        (
            {"kind": "fhir-rest", "base_url": "https://x/fhir?x=1"},
            'expected the FHIR R4 base URL, e.g. "https://ehr.example.org/fhir/r4" (no query string)',
        ),
        (
            {"kind": "fhir-rest", "base_url": "https://x/fhir", "page_size": 5000},
            "source.page_size: Input should be less than or equal to 1000; expected resources per page",
        ),
        (
            {"kind": "fhir-rest", "base_url": "https://x/fhir", "max_url_bytes": 100},
            "source.max_url_bytes: Input should be greater than or equal to 512; expected longest search "
            "URL the adapter sends",
        ),
        (
            {"kind": "fhir-rest", "base_url": "https://x/fhir", "patient_batch_size": 0},
            "source.patient_batch_size: Input should be greater than or equal to 1; expected most patients "
            "per search",
        ),
        (
            {
                "kind": "fhir-rest",
                "base_url": "https://x/fhir",
                "auth": {"kind": "smart-backend", "client_id": "c"},
            },
            "source.auth.key_file: is required but missing; expected the adapter's private key",
        ),
        (
            {"kind": "fhir-bulk", "base_url": "https://x/fhir"},
            "source.work_dir: is required but missing; expected folder the export is downloaded into",
        ),
    ],
)
def test_errors_name_the_key_and_the_fix(tmp_path: Path, source: dict[str, Any], expected: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        load(tmp_path, source)
    assert expected in str(caught.value)


def test_client_gets_the_ca_bundle_and_the_client_certificate(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        {
            "kind": "fhir-rest",
            "base_url": "https://ehr.example.org/fhir",
            "tls": {"ca_bundle": "ca.pem", "client_cert": "client.pem", "client_key": "client.key"},
            "retry": {"attempts": 3, "max_wait_seconds": 30},
        },
    )
    source = config.sites[0].source
    assert isinstance(source, fhir_settings.RestSource)
    client = connect.client_for("site-a", source)
    assert client.session.verify == str(tmp_path / "ca.pem")
    assert client.session.cert == (str(tmp_path / "client.pem"), str(tmp_path / "client.key"))
    assert client.retry.attempts == 3 and client.retry.max_wait == 30


def test_a_mappings_folder_on_the_source_is_refused_not_ignored(tmp_path: Path) -> None:
    """The searches are filtered by the catalog the sync maps with ([study] mappings), so the REST
    source has no mappings setting of its own: one in a config is an error, never silently ignored."""
    with pytest.raises(errors.ConfigError, match=r"source\.mappings: is not a known setting"):
        load(tmp_path, {"kind": "fhir-rest", "base_url": "https://x/fhir", "mappings": "maps"})
