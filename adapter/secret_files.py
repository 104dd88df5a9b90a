"""One rule for every secret the adapter reads from a file.

The site secret, the console's session secret, EHR and repository tokens and
SMART private keys all sit in files that only the adapter's user should be
able to read.  Each is checked the same way when it is loaded: readable by
group or others is a warning naming the file and the ``chmod`` that fixes it
(never the content), so a key copied with a loose umask does not go unseen.
It is a warning, not a refusal, because some sites hand secrets to a service
through a group-readable mount (Kubernetes secrets default to 0644).
Tokens and passwords for servers are read through ``adapter.net.credentials``,
which applies this check.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def warn_if_exposed(path: Path, what: str = "secret") -> bool:
    """Warn (without the content) when a secret file is readable by others; True if it is."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "private file is readable by group or others; run `chmod 600` on it",
            extra={"path": str(path), "mode": oct(mode & 0o777), "what": what},
        )
        return True
    return False
