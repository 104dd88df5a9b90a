"""What a pass asks a site for beyond its roster patients: the codes, per resource type.

The source stage does not know the mapping catalog.  Its caller turns the
catalog into this plain value (``adapter.mapping.discovery.source_wanted``:
the codes the pass maps, in every spelling of their code systems), and the
REST source searches for exactly those; a resource type it does not name is
read whole.  Discovery asks for ``Wanted.everything()``: reading the codes the
catalog does not know yet is its point.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Wanted:
    """Per resource type, the ``(system, code)`` pairs to search for.

    A type not in ``codes`` is read without a code filter; a type with no
    codes is not searched at all (asking without a filter would fetch
    everything of a type the pass does not want).
    """

    codes: Mapping[str, frozenset[tuple[str, str]]] = field(default_factory=dict)

    @classmethod
    def everything(cls) -> Wanted:
        """Every resource of every type: no code filter anywhere."""
        return cls()

    def codes_for(self, resource_type: str) -> frozenset[tuple[str, str]] | None:
        """The codes to search ``resource_type`` for; None: read it whole."""
        return self.codes.get(resource_type)
