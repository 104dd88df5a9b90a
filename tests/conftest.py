"""Shared fixtures: a finished demo run, fresh demo folders, config files.

Plain helpers live in support.py (import them from there, not from here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapter import config as config_mod
from adapter.service import job

from support import GOLDEN, TEST_SECRET, minimal_config, prepare_demo_workdir, write_test_secret

__all__ = ["GOLDEN", "TEST_SECRET", "minimal_config", "prepare_demo_workdir", "write_test_secret"]


@pytest.fixture(autouse=True)
def _adapter_logging_restored() -> Iterator[None]:
    """Put the ``adapter`` logger back as it was after each test.

    A command run in-process (typer's CliRunner) calls ``adapter.logs.configure``,
    which points the logger at that run's stderr; once the runner closes the
    stream, every later log line in the process fails and its traceback lands
    in pytest's captured output, which grows pass after pass and made the soak
    test's memory figures depend on which tests ran before it in a worker.
    """
    logger = logging.getLogger("adapter")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


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
