"""Who the demo patients are: identities, Patient resources, enrolment, roles.

Names and MRNs are made here and appear only in Patient.ndjson and
roster.csv; the timeline builders only ever see the opaque patient id.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from adapter.demo.generator.patient_run import IdPool
from adapter.demo.generator.profile import SiteProfile
from adapter.demo.generator.resources import resource_meta
from adapter.demo.generator.vocabulary import IDENTIFIER_TYPE, Json, coding

# Enrolments are spread over most of 2025 whatever the number of patients.
BASE_ENROLMENT = date(2025, 1, 13)
ENROLMENT_SPAN_DAYS = 300


@dataclass(frozen=True)
class Identity:
    """A synthetic patient: only Patient.ndjson and roster.csv ever show it."""

    patient_id: str
    mrn: str
    family: str
    given: str
    gender: str
    birth_date: date


def new_identity(
    site: SiteProfile, rng: random.Random, ids: IdPool, mrns: set[str], enrolment: date
) -> Identity:
    """A new patient with an MRN unique within the site and an opaque resource id."""
    gender = rng.choice(("female", "male"))
    age = rng.randint(18, 64)
    birth = date(enrolment.year - age, rng.randint(1, 12), rng.randint(1, 28))
    while True:
        mrn = f"{site.mrn_prefix}{rng.randrange(10**site.mrn_digits):0{site.mrn_digits}d}"
        if mrn not in mrns:
            mrns.add(mrn)
            break
    return Identity(
        patient_id=ids.new(rng, site.patient_prefix),
        mrn=mrn,
        family=rng.choice(site.family_names),
        given=rng.choice(site.given_names[gender]),
        gender=gender,
        birth_date=birth,
    )


def patient_resource(site: SiteProfile, who: Identity, registered: datetime) -> Json:
    """The Patient resource; demo-east also writes the full name as ``text``, family name first."""
    name: Json = {"use": "official"}
    if site.name_as_text:
        name["text"] = f"{who.family}{who.given}"
    name["family"] = who.family
    name["given"] = [who.given]
    return {
        "resourceType": "Patient",
        "id": who.patient_id,
        "meta": resource_meta(site, registered),
        "identifier": [
            {
                "use": "usual",
                "type": {"coding": [coding(IDENTIFIER_TYPE, "MR", "Medical record number")]},
                "system": site.mrn_system,
                "value": who.mrn,
            }
        ],
        "name": [name],
        "gender": who.gender,
        "birthDate": who.birth_date.isoformat(),
    }


def enrolment_dates(rng: random.Random, count: int) -> list[date]:
    """Enrolment dates spread evenly over 2025, with a little jitter."""
    spacing = ENROLMENT_SPAN_DAYS / count
    jitter = max(1, int(spacing // 2))
    return [BASE_ENROLMENT + timedelta(days=int(i * spacing) + rng.randrange(jitter)) for i in range(count)]


def assign_roles(site: SiteProfile, rng: random.Random, count: int) -> list[frozenset[str]]:
    """Hand the site's special roles to distinct patients where there are enough."""
    order = list(range(count))
    rng.shuffle(order)
    held: list[set[str]] = [set() for _ in range(count)]
    for k, role in enumerate(site.roles):
        held[order[k % count]].add(role)
    return [frozenset(roles) for roles in held]
