"""The state shared by the timeline builders while they write one patient.

One ``PatientRun`` carries the patient's own random stream, the site's id
pool and output files, and the roles (planted messes) the patient holds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date

from adapter.demo.generator.output import Mess, SiteFiles
from adapter.demo.generator.profile import SiteProfile
from adapter.demo.generator.vocabulary import Json


class IdPool:
    """Opaque random resource ids, unique within a site.

    Ids are deliberately unrelated to MRNs or subject ids, as on real servers,
    so that an adapter that confuses them fails the tests.
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def new(self, rng: random.Random, prefix: str) -> str:
        while True:
            candidate = f"{prefix}-{rng.getrandbits(48):012x}"
            if candidate not in self._seen:
                self._seen.add(candidate)
                return candidate


@dataclass
class PatientRun:
    """The state the timeline functions share while writing one patient."""

    site: SiteProfile
    rng: random.Random
    ids: IdPool
    out: SiteFiles
    messes: list[Mess]
    patient_id: str
    roles: frozenset[str]
    enrolment: date
    # Resources emitted again after the patient's other Observations (the
    # duplicate mess), so the copy is not simply the adjacent line.
    replay: list[Json] = field(default_factory=list)

    @property
    def subject(self) -> Json:
        return {"reference": f"Patient/{self.patient_id}"}

    def has(self, role: str) -> bool:
        return role in self.roles

    def new_id(self, prefix: str) -> str:
        return self.ids.new(self.rng, prefix)

    def mess(self, kind: str, resource: str, note: str) -> None:
        self.messes.append(Mess(self.site.name, kind, resource, note))
