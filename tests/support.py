"""Test helpers shared across test folders (import as ``from support import ...``).

Kept out of conftest.py on purpose: several folders have their own
conftest.py, and ``from support import`` would pick whichever was imported
last.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

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


def demo_sandbox(tmp_path: Path, *, own_mappings: bool = False) -> config_mod.Config:
    """A demo config over its own copy of the demo data (and mappings), safe to edit.

    Tests that change an export, a roster or an override file use this so the
    bundled files stay untouched; ``tmp_path/work`` holds the state and the
    repository, ``tmp_path/data`` the site folders, ``tmp_path/mappings`` the
    mappings when ``own_mappings`` is set.
    """
    data, work = tmp_path / "data", tmp_path / "work"
    shutil.copytree(paths.demo_data_dir(), data)
    work.mkdir()
    write_test_secret(work / "site-secret.key")
    config = site.demo_config(work, data_dir=data)
    if not own_mappings:
        return config
    mappings = tmp_path / "mappings"
    shutil.copytree(paths.default_mappings_dir(), mappings)
    return config.model_copy(update={"study": config.study.model_copy(update={"mappings": mappings})})


def write_smart_key_pair(folder: Path) -> tuple[Path, Path]:
    """A fresh RSA key pair for SMART Backend Services: (private PKCS#8 PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = folder / "adapter.pem", folder / "adapter.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


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
    # Commits of 100 resources: the crash lands after committed pages, not before the first.
    config = config.model_copy(update={"sync": config.sync.model_copy(update={"resources_per_commit": 100})})
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
