"""One finding of ``trial-adapter check``: what was looked at, whether it is fine, and the fix.

Both the capability checks (``adapter.fhir.capability``) and the behaviour
probes (``adapter.fhir.probe``) report in these rows, and the capability
checks run the probes, so the row type lives here, where both can import it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckRow:
    item: str
    ok: bool
    detail: str  # what was found, or the problem and its fix
    warning: bool = False  # ok, but a person should look (e.g. TLS verification off)
