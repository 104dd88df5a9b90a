"""`trial-adapter check` and `discover` for server sites, and SMART Backend Services against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapter import config as config_mod
from adapter import errors, paths
from adapter import roster as roster_mod
from adapter.cli import main as cli
from adapter.fhir import auth, capability, discover, http, rest
from adapter.fhir import settings as fhir_settings
from adapter.mapping import catalog as catalog_mod
from adapter.mapping import discovery
from adapter.store import db
from adapter.sync import SiteSetup, sync_site

from fhirserver import FhirServer, FhirServerFactory, free_port
from fhirtesting import demo_config, server_config
from golden import repository_records
from support import write_smart_key_pair


def write_toml(workdir: Path, site: str, source: str) -> Path:
    """A hand-written site config, as an IT team would write it (paths relative to the file)."""
    demo = demo_config(workdir, (site,))
    roster = paths.demo_data_dir() / site / "roster.csv"
    text = f"""
[study]
mappings = "{demo.study.mappings}"

[store]
url = "sqlite:///state.db"

[privacy]
hmac_key_file = "site-secret.key"

[[sites]]
id = "{site}"
timezone = "{demo.sites[0].timezone}"
roster = "{roster}"

[sites.source]
{source}

[repository]
kind = "file"
path = "repository"
"""
    path = workdir / "trial-adapter.toml"
    path.write_text(text)
    return path


def test_check_reports_a_reachable_server_green(
    demo_server: FhirServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_toml(tmp_path, "demo-north", f'kind = "fhir-rest"\nbase_url = "{demo_server.base_url}"')
    assert cli.main(["check", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    for item in ("FHIR version", "Observation", "MedicationAdministration", "Procedure", "auth (none)"):
        assert item in out
    assert "R4 4.0.1" in out and "failed" not in out


def test_check_reports_an_unreachable_server_red_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}/fhir"
    source = f'kind = "fhir-rest"\nbase_url = "{url}"\nretry = {{ attempts = 1 }}'
    path = write_toml(tmp_path, "demo-north", source)
    assert cli.main(["check", "-c", str(path)]) == errors.EXIT_SOURCE
    out = " ".join(capsys.readouterr().out.split())
    assert "failed" in out and "connection failed" in out


def test_discover_lists_codes_units_and_what_is_unmapped(
    demo_server: FhirServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = server_config(tmp_path, demo_server.base_url, ("demo-east",))
    site = config.sites[0]
    catalog = catalog_mod.load_catalog(config.study.mappings, site.id)
    found = discovery.judge(
        discover.discover_site(site.id, site.source, roster_mod.load_roster(site.roster)), catalog
    )
    assert found.patients_found == 4
    by_code = {(c.system, c.code): c for c in found.codes}
    sodium = by_code[("http://hospital-east.example/fhir/lis", "0099")]
    assert sodium.status == "unmapped" and sodium.count == 2 and sodium.unit
    creatinine = by_code[("http://hospital-east.example/fhir/lis", "0045")]
    assert creatinine.status == "mapped" and creatinine.concept == "creatinine"
    assert found.codes[0].status == "unmapped"  # unmapped first: that is what the reader is after

    source = f'kind = "fhir-rest"\nbase_url = "{demo_server.base_url}"'
    path = write_toml(tmp_path / "cli", "demo-east", source)
    assert cli.main(["discover", "--site", "demo-east", "-c", str(path), "--unmapped", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {(c["system"], c["code"]) for c in listed} == {(c.system, c.code) for c in found.unmapped}


def test_discover_reads_the_ndjson_folder_too(tmp_path: Path) -> None:
    config = demo_config(tmp_path, ("demo-east",))
    site = config.sites[0]
    catalog = catalog_mod.load_catalog(config.study.mappings, site.id)
    found = discovery.judge(
        discover.discover_site(site.id, site.source, roster_mod.load_roster(site.roster)), catalog
    )
    assert any(c.code == "0099" and c.status == "unmapped" for c in found.codes)


# ----------------------------------------------------------- SMART server


@pytest.fixture(scope="module")
def smart_server(
    fhir_server_factory: FhirServerFactory, tmp_path_factory: pytest.TempPathFactory
) -> tuple[FhirServer, Path]:
    """A server that only accepts SMART Backend Services tokens, with the adapter's key registered."""
    keys = tmp_path_factory.mktemp("smart-keys")
    private, public = write_smart_key_pair(keys)
    server = fhir_server_factory(
        server_auth={
            "types": ["smart"],
            "smart_clients": [
                {"client_id": "trial-adapter", "public_key_path": str(public), "scopes": "system/*.*"}
            ],
        }
    )
    loader = auth.SmartBackendServices("trial-adapter", auth.load_signing_key(private), scope="system/*.*")
    headers = loader.headers(http.FhirClient("loader", server.base_url))
    server.load_ndjson(paths.demo_data_dir() / "demo-north", headers=headers)
    return server, private


def test_sync_through_smart_backend_services(
    smart_server: tuple[FhirServer, Path], ndjson_records: dict[str, object], tmp_path: Path
) -> None:
    server, key = smart_server
    config = server_config(
        tmp_path,
        server.base_url,
        ("demo-north",),
        auth={"kind": "smart-backend", "client_id": "trial-adapter", "key_file": str(key)},
    )
    setup = SiteSetup.load(config, config.sites[0])
    source = setup.make_source()
    assert isinstance(source, rest.RestSearchSource)
    urls: list[str] = []
    source.client.session.hooks["response"].append(lambda r, *a, **k: urls.append(r.url))
    sessions = db.open_store(config.store.url)
    sync_site(setup, sessions, source=source)
    assert [u for u in urls if u.endswith("/auth/token")] == [f"{server.root_url}/auth/token"]  # one token
    assert any(u.endswith("/.well-known/smart-configuration") for u in urls)

    from adapter.delivery import outbox
    from adapter.sinks import factory as sinks

    outbox.drain(sessions, sinks.make_sink(config.repository))
    assert repository_records(config) == ndjson_records["demo-north"]

    rows = capability.check_server("demo-north", config.sites[0].source)
    assert all(row.ok for row in rows), rows
    assert {"SMART configuration", "auth (smart-backend)"} <= {row.item for row in rows}


def test_check_names_the_kid_when_the_server_refuses_the_key(
    smart_server: tuple[FhirServer, Path], tmp_path: Path
) -> None:
    server, _ = smart_server
    stranger = tmp_path / "other.pem"
    stranger.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    settings = (
        config_mod.config_from_dict(
            {
                "sites": [
                    {
                        "id": "x",
                        "timezone": "UTC",
                        "roster": "r.csv",
                        "source": {
                            "kind": "fhir-rest",
                            "base_url": server.base_url,
                            "auth": {
                                "kind": "smart-backend",
                                "client_id": "trial-adapter",
                                "key_file": str(stranger),
                            },
                        },
                    }
                ],
                "repository": {"kind": "file", "path": "out"},
            },
            base_dir=tmp_path,
        )
        .sites[0]
        .source
    )
    rows = {row.item: row for row in capability.check_server("x", settings)}  # type: ignore[arg-type]
    refused = rows["auth (smart-backend)"]
    assert not refused.ok and "verification failed" in refused.detail and "kid" in refused.detail


def statement(version: str = "4.0.1", **resources: list[str]) -> dict[str, object]:
    return {
        "resourceType": "CapabilityStatement",
        "fhirVersion": version,
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {
                        "type": t,
                        "searchParam": [{"name": p} for p in params],
                        "operation": [{"name": "export"}],
                    }
                    for t, params in resources.items()
                ],
            }
        ],
    }


def test_capability_rows_name_what_is_missing() -> None:
    rest_site = fhir_settings.RestSource(kind="fhir-rest", base_url="https://x/f")
    rows = {
        r.item: r
        for r in capability.capability_rows(
            statement("5.0.0", Patient=["identifier"], Observation=["patient"], Procedure=["patient"]),
            rest_site,
        )
    }
    assert not rows["FHIR version"].ok and "R4" in rows["FHIR version"].detail
    assert not rows["Observation"].ok and "code" in rows["Observation"].detail
    assert (
        not rows["MedicationAdministration"].ok and "not offered" in rows["MedicationAdministration"].detail
    )
    assert rows["Procedure"].ok and "_lastUpdated not declared" in rows["Procedure"].detail


def test_capability_rows_check_export_for_bulk_sites() -> None:
    bulk_site = fhir_settings.BulkSource(
        kind="fhir-bulk", base_url="https://x/f", group_id="g", work_dir=Path("w")
    )
    offered = capability.capability_rows(statement(Group=["_id"], Patient=["identifier"]), bulk_site)
    assert [r.ok for r in offered if r.item == "Bulk Data export"] == [True]
    missing = statement(Patient=["identifier"])
    assert [r.ok for r in capability.capability_rows(missing, bulk_site) if r.item == "Bulk Data export"] == [
        False
    ]
    smart = capability.smart_row(
        {
            "token_endpoint": "https://x/token",
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }
    )
    assert smart.ok and "private_key_jwt not listed" in smart.detail
