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


def default_mappings_dir() -> Path:
    """The study's mapping folder: the wheel's copy, else the checkout's."""
    bundled = PACKAGE_DIR / "_bundled_mappings" / DEFAULT_STUDY
    if bundled.is_dir():
        return bundled
    return PACKAGE_DIR.parent / "mappings" / DEFAULT_STUDY


def demo_data_dir() -> Path:
    """The bundled synthetic demo sites (regenerate with ``trial-adapter demo-data``)."""
    return PACKAGE_DIR / "demo" / "data"
