"""Deterministic synthetic demo sites for trial NCT06507514.

The adapter ships with two fake hospitals so that it can be tried, tested and
benchmarked without a site EHR; they are read through the NDJSON folder source
(docs/design.md §2):

* ``demo-north`` looks like a US hospital: LOINC, RxNorm, CPT and SNOMED CT
  codes, conventional US units, timestamps in US Central time (-06:00 / -05:00).
* ``demo-east`` looks like a Chinese hospital: local LIS item codes with
  Chinese displays (LOINC beside them on about half of the results), SI units,
  ICD-9-CM-3 and local procedure codes, old ATC code for blinatumomab, +08:00.

Each roster patient walks the whole protocol timeline: screening organ
function, a pre-transplant blinatumomab cycle, G-CSF mobilisation and
apheresis, autologous HSCT (day 0), daily blood counts through
reconstitution, four maintenance cycles and MRD follow-up.  On top of that,
a few *planted messes* exercise every mapping issue type; ``messes.json``
lists each of them with the issue the adapter is expected to raise, so tests
can check the adapter finds exactly these (a dose charted as not done and a
result entered in error are listed too: they must raise none).

Everything is a pure function of ``(patients_per_site, seed)``: one
``random.Random(seed)`` feeds every choice, dates hang off a fixed 2025 base
date, JSON keys are written in a fixed order and lines end in ``\\n``.
Regenerating therefore gives byte-identical files, which is what the bundled
copy in ``adapter/demo/data/`` is checked against.  Resources are written to
disk as they are made, so ``patients_per_site=500`` stays fast and small in
memory.

Nothing here is real patient data: names come from short fixed lists and
identifiers are random.

The package's modules, in the order the data is made:

* ``vocabulary``, ``profile``, ``sites``: code systems, what a site profile
  is, and the two hospitals;
* ``clocks``, ``resources``: local times with UTC offsets, and the small
  builders (meta, quantities, Observations) every phase uses;
* ``roster``: identities, Patient resources, enrolment dates and roles;
* ``screening``, ``infusions``, ``transplant``, ``blood_counts``,
  ``follow_up``: the timeline phases; ``messes``: the planted messes;
* ``timeline``: one whole patient; ``build``: whole sites and the folder;
  ``output``, ``patient_run``: files written, results and per-patient state.
"""

from adapter.demo.generator.build import generate, generate_site
from adapter.demo.generator.infusions import MAINTENANCE_CYCLES
from adapter.demo.generator.output import GeneratedDemo, Mess, SiteOutput
from adapter.demo.generator.profile import LabCode, SiteProfile
from adapter.demo.generator.sites import EAST, NORTH, SITES

__all__ = [
    "EAST",
    "MAINTENANCE_CYCLES",
    "NORTH",
    "SITES",
    "GeneratedDemo",
    "LabCode",
    "Mess",
    "SiteOutput",
    "SiteProfile",
    "generate",
    "generate_site",
]
