"""Test helpers shared across test folders (import as ``from support import ...``).

Kept out of conftest.py on purpose: several folders have their own
conftest.py, and ``from support import`` would pick whichever was imported
last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapter import config as config_mod
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


def minimal_config(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "sites": [
            {"id": "a", "timezone": "UTC", "roster": "r.csv", "source": {"kind": "ndjson", "path": "data"}}
        ],
        "repository": {"kind": "file", "path": "out"},
    }
    raw.update(overrides)
    return raw
