"""Test helpers shared across test folders (import as ``from support import ...``).

Kept out of conftest.py on purpose: several folders have their own
conftest.py, and ``from support import`` would pick whichever was imported
last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from adapter import config as config_mod
from adapter import paths
from adapter.demo import site
from adapter.mapping import engine
from adapter.service import job

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


def phi_strings(data: Path | None = None) -> set[str]:
    """Names, MRNs (every identifier value) and birth dates of every patient, on or off the roster.

    What must never reach the trial repository, an issue, a log line or an
    error message; tests scan their outputs for each of these strings.
    ``data`` is a folder of site folders (default: the bundled demo's).
    """
    found: set[str] = set()
    for patients in (data or paths.demo_data_dir()).glob("*/Patient.ndjson"):
        for line in patients.read_bytes().splitlines():
            patient = orjson.loads(line)
            found |= {i["value"] for i in patient.get("identifier", [])}
            for name in patient.get("name", []):
                found |= set(name.get("given", [])) | {name.get("family", ""), name.get("text", "")}
            found.add(patient.get("birthDate", ""))
    return {s for s in found if s and len(s) >= 3}


def crash_mid_sync_then_resume(
    config: config_mod.Config, monkeypatch: pytest.MonkeyPatch, *, at_resource: int = 700
) -> None:
    """Run the sync with a power cut at the ``at_resource``-th resource mapped, then again cleanly.

    The 700th resource of the demo lies inside the first site's pass, so the
    crash leaves committed pages and an unfinished run for the second run to
    resume from; the caller compares what that resumed run delivered.
    """
    real = engine.map_resource
    mapped = 0

    def crashing(*args: Any, **kwargs: Any) -> engine.MappingResult:
        nonlocal mapped
        mapped += 1
        if mapped == at_resource:
            raise RuntimeError("power cut")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "map_resource", crashing)
    with pytest.raises(RuntimeError, match="power cut"):
        job.run_once(config, config.sites)
    monkeypatch.setattr(engine, "map_resource", real)
    job.run_once(config, config.sites)
