"""Pseudonymization: what may leave the site, and in what form.

Only trial subject ids, normalized values and dates leave the site; source
references (``Observation/123``) leave only as keyed hashes (HMAC-SHA256 with
a site secret), so the trial team can tell two pieces of evidence apart and
ask the site about one, but cannot look anything up in the site's EHR
(docs/design.md §5).  The secret comes from a file or an environment variable,
never from the config file itself, and is never logged.

Dates may also be shifted (``[privacy] date_shift_days``, off by default):
every date of a subject moves by the same whole number of days, derived from
the site secret and the subject id, so intervals (day offsets from
transplant, cycle lengths, the screening window) stay true while calendar
dates no longer match the hospital's records.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any

from adapter import errors, secret_files
from adapter.config import PrivacyConfig

MIN_SECRET_BYTES = 16
log = logging.getLogger(__name__)


def load_secret(privacy: PrivacyConfig) -> bytes:
    """The site's HMAC secret from the configured file or environment variable."""
    if privacy.hmac_key_env:
        value = os.environ.get(privacy.hmac_key_env, "")
        if len(value.encode()) < MIN_SECRET_BYTES:
            raise errors.ConfigError(
                f"privacy.hmac_key_env: environment variable {privacy.hmac_key_env} is unset or shorter "
                f"than {MIN_SECRET_BYTES} bytes; set it to a long random string"
            )
        return value.encode()
    if privacy.hmac_key_file is not None:
        path = privacy.hmac_key_file
        try:
            data = path.read_bytes().strip()
        except OSError as exc:
            raise errors.ConfigError(
                f"privacy.hmac_key_file: cannot read {path} ({exc.strerror or exc}); create it with "
                "`trial-adapter keygen PATH`"
            ) from exc
        warn_if_exposed(path)
        if len(data) < MIN_SECRET_BYTES:
            raise errors.ConfigError(
                f"privacy.hmac_key_file: {path} holds fewer than {MIN_SECRET_BYTES} bytes; "
                "create a new one with `trial-adapter keygen PATH`"
            )
        return data
    raise errors.ConfigError(
        "[privacy]: set hmac_key_file (a file made by `trial-adapter keygen PATH`) or hmac_key_env; "
        "the site secret keys the hashes of source references"
    )


def warn_if_exposed(path: Path) -> bool:
    """Warn (without the content) when a secret file is readable by others (``adapter.secret_files``)."""
    return secret_files.warn_if_exposed(path, "site secret")


def write_secret(path: Path) -> None:
    """Create a new random secret file readable only by its owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")


def hash_ref(secret: bytes, site: str, ref: str) -> str:
    """A keyed, stable, non-reversible stand-in for a source reference."""
    digest = hmac.new(secret, f"{site}|{ref}".encode(), hashlib.sha256).hexdigest()
    return f"src-{digest[:24]}"


def subject_date_shift(secret: bytes, subject_id: str, max_days: int) -> int:
    """Whole days in -max_days..-1 or 1..max_days, the same for a subject at every run.

    Keyed by the site secret, so nobody without it can undo the shift; never
    0 when shifting is on, so no subject keeps its true dates.
    """
    if max_days <= 0:
        return 0
    digest = hmac.new(secret, f"date-shift|{subject_id}".encode(), hashlib.sha256).digest()
    step = int.from_bytes(digest[:8], "big") % (2 * max_days)
    return step - max_days if step < max_days else step - max_days + 1


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T[0-9:.]+(Z|[+-]\d{2}:\d{2})?)?$")


def shift_dates(value: Any, days: int) -> Any:
    """``value`` (JSON) with every ISO date and date-time string moved by ``days``."""
    if days == 0:
        return value
    if isinstance(value, dict):
        return {key: shift_dates(inner, days) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [shift_dates(inner, days) for inner in value]
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            if len(value) == 10:
                return (dt.date.fromisoformat(value) + dt.timedelta(days=days)).isoformat()
            moment = dt.datetime.fromisoformat(value) + dt.timedelta(days=days)
            return moment.isoformat().replace("+00:00", "Z") if value.endswith("Z") else moment.isoformat()
        except ValueError:
            return value
    return value


def pseudonymize_record(
    record: dict[str, Any], secret: bytes, site: str, *, max_date_shift_days: int = 0
) -> dict[str, Any]:
    """A record's JSON with every evidence reference replaced by its keyed hash.

    With ``max_date_shift_days`` > 0 every date in it is shifted by the
    subject's fixed offset (``subject_date_shift``).
    """
    out = dict(record)
    out["evidence"] = [hash_ref(secret, site, ref) for ref in record.get("evidence", ())]
    if "criteria" in record:
        out["criteria"] = [
            {**criterion, "evidence": [hash_ref(secret, site, ref) for ref in criterion.get("evidence", ())]}
            for criterion in record["criteria"]
        ]
    out["site"] = site
    if max_date_shift_days > 0:
        days = subject_date_shift(secret, str(record["subject_id"]), max_date_shift_days)
        out = shift_dates(out, days)
    return out
