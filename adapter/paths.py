"""Where the bundled files live, in a checkout and in an installed wheel.

The mapping catalog sits at the top of the repository (``mappings/``) so
data managers find it; the wheel carries a copy inside the package
(``adapter/_bundled_mappings``, see pyproject's force-include).  Callers ask
here instead of guessing relative paths.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_STUDY = "nct06507514"
OVERRIDES_DIR_NAME = "mapping-overrides"


def default_mappings_dir() -> Path:
    """The study's mapping folder: the wheel's copy, else the checkout's."""
    bundled = PACKAGE_DIR / "_bundled_mappings" / DEFAULT_STUDY
    if bundled.is_dir():
        return bundled
    return PACKAGE_DIR.parent / "mappings" / DEFAULT_STUDY


def demo_data_dir() -> Path:
    """The bundled synthetic demo sites (regenerate with ``trial-adapter demo-data``)."""
    return PACKAGE_DIR / "demo" / "data"


def default_overrides_dir(store_url: str, config_dir: Path) -> Path:
    """Where a site's own mapping fixes live when ``[study] overrides`` is not set.

    Never inside the installed package: site-packages may be read-only (a
    venv owned by root, systemd's ``ProtectSystem=strict``, a container
    image), and an upgrade replaces it.  The fixes belong with the site's
    other writable state: beside a SQLite state file, else (a PostgreSQL
    state) beside the config file, where ``check`` says so if the service
    cannot write there.  Deliberately not from the environment (systemd's
    ``STATE_DIRECTORY``): a command run by hand must find the same file as
    the service.
    """
    prefix = "sqlite:///"
    if store_url.startswith(prefix) and not store_url.endswith(":memory:"):
        return Path(store_url.removeprefix(prefix)).resolve().parent / OVERRIDES_DIR_NAME
    return config_dir.resolve() / OVERRIDES_DIR_NAME
