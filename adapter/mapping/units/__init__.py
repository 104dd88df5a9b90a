"""Unit normalisation and conversion for lab values: hospital spellings -> UCUM -> protocol units.

Hospitals write one unit many ways (docs/terminology.md §7); the protocol
thresholds are in one unit per concept (docs/terminology.md §6: creatinine
mg/dL, bilirubin mg/dL, WBC/PLT 10^9/L, ALT/AST U/L, LVEF/SpO2 %, O2 flow
L/min).  This package does the two steps between them:

``normalize(spelling)`` (``spellings.py``)
    hospital spelling -> one UCUM code (https://ucum.org/ucum), decided by a
    hand-written spelling table plus a strict reader for real UCUM codes
    (``ucum.py``).  No pint involved, so it is cheap.
``convert(value, from_unit, to_unit, molar_mass=...)`` (``conversion.py``)
    the dimensional arithmetic is pint's, on a small registry of UCUM atoms;
    the only analyte-specific step is the molar mass.  Cached per unit pair.

Unit problems are ``UnitError``s (``errors.py``): ``UnknownUnit`` for a
spelling that cannot be read, ``NotConvertible`` for units that cannot become
one another.

Deliberate departures from pure UCUM, each explained where it is made:

* ``[IU]`` is the same unit as ``U`` (``conversion._REGISTRY_DEFINITIONS``).
* Blood counts carry no count dimension, as in UCUM (``conversion.py``).
* Only the SI prefixes labs use are known (k c d m u n p f; ``ucum.py``).
"""

from adapter.mapping.units.conversion import convert
from adapter.mapping.units.errors import NotConvertible, UnitError, UnknownUnit
from adapter.mapping.units.spellings import is_known, normalize

__all__ = ["NotConvertible", "UnitError", "UnknownUnit", "convert", "is_known", "normalize"]
