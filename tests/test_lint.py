"""Style and types are part of the test suite, so they stay clean from the start.

ruff (rules in pyproject.toml) over the whole tree and mypy over ``adapter/``.
Both run as subprocesses of the venv's own tools, exactly as a developer would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_is_clean() -> None:
    result = run(str(BIN / "ruff"), "check", "adapter", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = run(str(BIN / "mypy"), "adapter")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_exactly_the_readme_test_command_with_the_coverage_gate() -> None:
    """`.ci/run` and the README must not drift apart: a fresh machine runs what CI runs."""
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme = (ROOT / "README.md").read_text()
    assert f"\n{ci_command}\n" in readme
    assert "--cov-fail-under=" in ci_command and "-n " in ci_command
