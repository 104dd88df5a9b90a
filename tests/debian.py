"""Installing a Debian package the tests need on a fresh CI machine, one at a time.

The PostgreSQL server and chromium come from Debian, installed with apt-get
when missing.  apt refuses to run twice at once ("could not get lock"), and
with parallel test workers two of them may want a package in the same
second, so every install here takes one file lock first and re-checks
whether another worker installed the package meanwhile.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

LOCK = Path(tempfile.gettempdir()) / "trial-adapter-tests-apt.lock"


def apt_install(package: str, *, installed: Callable[[], bool]) -> str:
    """Install ``package`` unless ``installed()``; returns apt's output tail ("" if nothing ran)."""
    if installed():
        return ""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return (
            f"{package} is missing and apt-get cannot install it here (needs root): apt-get install {package}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed():
            return ""
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False, timeout=900)
        done = subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
    return f"{done.stdout[-1500:]} {done.stderr[-1500:]}"
