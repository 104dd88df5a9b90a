"""Shared fixtures: a finished demo run, the fixed test secret, config helpers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapter import config as config_mod
from adapter import job
from adapter.demo import site

TESTS = Path(__file__).resolve().parent
GOLDEN = TESTS / "data" / "demo" / "expected"
# A fixed, test-only secret so the keyed hashes in golden files are stable.
TEST_SECRET = "0123456789abcdef-test-only-secret-not-for-sites\n"  # noqa: S105


def prepare_demo_workdir(workdir: Path) -> config_mod.Config:
    """A demo config whose secret is the fixed test secret."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_test_secret(workdir / "site-secret.key")
    return site.demo_config(workdir)


def write_test_secret(path: Path) -> Path:
    """The fixed test secret, private to its owner like a real one."""
    path.write_text(TEST_SECRET)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[config_mod.Config, job.JobResult]:
    """The bundled demo, synced and delivered once (shared, do not modify)."""
    config = prepare_demo_workdir(tmp_path_factory.mktemp("demo"))
    return config, job.run_once(config, config.sites)


@pytest.fixture
def fresh_demo(tmp_path: Path) -> config_mod.Config:
    """A demo config in a fresh folder, for tests that change state."""
    return prepare_demo_workdir(tmp_path / "demo")


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "trial-adapter.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def minimal_config(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "sites": [
            {"id": "a", "timezone": "UTC", "roster": "r.csv", "source": {"kind": "ndjson", "path": "data"}}
        ],
        "repository": {"kind": "file", "path": "out"},
    }
    raw.update(overrides)
    return raw
