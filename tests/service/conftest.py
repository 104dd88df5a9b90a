"""Fixtures for the service tests: both store backends, a bigger demo data set."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter import config as config_mod
from adapter.demo import generator

import pgserver
from support import TEST_SECRET, prepare_demo_workdir

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty state database on each backend (a real PostgreSQL 15 server)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return pgserver.server().new_database()


@pytest.fixture
def demo_on(tmp_path: Path) -> object:
    """``demo_on(url)``: the bundled demo config with its state in the database at ``url``."""

    def make(url: str) -> config_mod.Config:
        config = prepare_demo_workdir(tmp_path / "demo")
        return config.model_copy(update={"store": config.store.model_copy(update={"url": url})})

    return make


@pytest.fixture(scope="session")
def big_demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo sites with 8 patients each: a pass spans several committed pages and
    lasts long enough to stop or kill it in the middle."""
    folder = tmp_path_factory.mktemp("big-demo")
    generator.generate(folder, patients_per_site=8)
    return folder


def site_config_toml(
    *,
    data: Path,
    secret: Path,
    store_url: str,
    repository: Path,
    sync_minutes: float = 60,
    delivery_minutes: float = 5,
    listen: str = "127.0.0.1:0",
) -> str:
    """A config file for the two demo sites in ``data``, as a site IT team would write it."""
    sites = "".join(
        f'[[sites]]\nid = "{site}"\ntimezone = "{tz}"\nroster = "{data / site / "roster.csv"}"\n'
        f'[sites.source]\nkind = "ndjson"\npath = "{data / site}"\n'
        for site, tz in (("demo-north", "America/Chicago"), ("demo-east", "Asia/Shanghai"))
    )
    return (
        f'[store]\nurl = "{store_url}"\n[privacy]\nhmac_key_file = "{secret}"\n{sites}'
        f'[repository]\nkind = "file"\npath = "{repository}"\n'
        f"[schedule]\nsync_interval_minutes = {sync_minutes}\n"
        f"delivery_interval_minutes = {delivery_minutes}\n"
        f'[service]\nlisten = "{listen}"\nstop_timeout_seconds = 20\n'
        "[sync]\nresources_per_commit = 100\n"  # a pass commits many times: a signal lands between
    )


@pytest.fixture
def config_file(tmp_path: Path) -> object:
    """``config_file(data=..., store_url=..., **schedule)``: write a site config; return its path."""

    def write(*, data: Path, store_url: str | None = None, **options: object) -> Path:
        secret = tmp_path / "site.key"
        secret.write_text(TEST_SECRET)
        secret.chmod(0o600)
        path = tmp_path / "trial-adapter.toml"
        path.write_text(
            site_config_toml(
                data=data,
                secret=secret,
                store_url=store_url or f"sqlite:///{tmp_path / 'state' / 'state.db'}",
                repository=tmp_path / "repository",
                **options,  # type: ignore[arg-type]
            )
        )
        return path

    return write
