"""Write the demo folder: both sites' NDJSON files and roster.csv, then messes.json.

Every random choice descends from one ``random.Random(seed)``, one stream
per site and one per patient, so the same arguments give the same bytes.
"""

from __future__ import annotations

import csv
import random
from datetime import timedelta
from pathlib import Path

import orjson

from adapter.demo.generator.clocks import local_time
from adapter.demo.generator.output import GeneratedDemo, Mess, SiteFiles, SiteOutput
from adapter.demo.generator.patient_run import IdPool, PatientRun
from adapter.demo.generator.profile import SiteProfile
from adapter.demo.generator.roster import (
    BASE_ENROLMENT,
    ENROLMENT_SPAN_DAYS,
    assign_roles,
    enrolment_dates,
    new_identity,
    patient_resource,
)
from adapter.demo.generator.sites import SITES
from adapter.demo.generator.timeline import roster_patient, stray_patient

# Subject ids are "<study>-<site letter>-<number>", as the trial assigns them.
STUDY = "NCT06507514"
ROSTER_COLUMNS = ("identifier_system", "identifier_value", "subject_id", "enrolment_date")


def generate_site(
    site: SiteProfile, folder: Path, patients: int, rng: random.Random, messes: list[Mess]
) -> SiteOutput:
    """Write one site's folder: roster patients, one stray patient, roster.csv.

    Each patient draws from its own ``Random`` seeded from the site's stream,
    so a planted mess never reshuffles the other patients' data.
    """
    ids = IdPool()
    mrns: set[str] = set()
    enrolments = enrolment_dates(rng, patients)
    roles = assign_roles(site, rng, patients)
    width = max(3, len(str(patients)))
    roster_path = folder / "roster.csv"
    with SiteFiles(folder) as out, roster_path.open("w", encoding="utf-8", newline="") as roster_file:
        roster = csv.writer(roster_file, lineterminator="\n")
        roster.writerow(ROSTER_COLUMNS)
        for index in range(patients):
            enrolment = enrolments[index]
            person_rng = random.Random(rng.getrandbits(64))  # noqa: S311 - synthetic data, not security
            who = new_identity(site, person_rng, ids, mrns, enrolment)
            subject_id = f"{STUDY}-{site.letter}-{index + 1:0{width}d}"
            roster.writerow((site.mrn_system, who.mrn, subject_id, enrolment.isoformat()))
            out.emit(patient_resource(site, who, local_time(enrolment - timedelta(days=40), 9)))
            roster_patient(
                PatientRun(site, person_rng, ids, out, messes, who.patient_id, roles[index], enrolment)
            )
        stray_rng = random.Random(rng.getrandbits(64))  # noqa: S311
        stray_day = BASE_ENROLMENT + timedelta(days=stray_rng.randrange(ENROLMENT_SPAN_DAYS))
        stray = new_identity(site, stray_rng, ids, mrns, stray_day)
        out.emit(patient_resource(site, stray, local_time(stray_day - timedelta(days=3), 10)))
        stray_patient(PatientRun(site, stray_rng, ids, out, messes, stray.patient_id, frozenset(), stray_day))
    return SiteOutput(
        site=site.name,
        folder=folder,
        roster=roster_path,
        files=dict(out.paths),
        counts=dict(out.counts),
        roster_subjects=patients,
        patients_not_on_roster=1,
    )


def generate(out_dir: Path, patients_per_site: int = 4, seed: int = 7) -> GeneratedDemo:
    """Write both demo sites and ``messes.json`` under ``out_dir``.

    Same arguments, same bytes: the bundled ``adapter/demo/data`` is the
    output of ``generate(Path("adapter/demo/data"))`` and a test keeps it so.
    """
    if patients_per_site < 1:
        raise ValueError("patients_per_site must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    messes: list[Mess] = []
    sites: dict[str, SiteOutput] = {}
    for site in SITES:
        site_rng = random.Random(rng.getrandbits(64))  # noqa: S311
        sites[site.name] = generate_site(site, out_dir / site.name, patients_per_site, site_rng, messes)
    messes_path = out_dir / "messes.json"
    messes_path.write_bytes(orjson.dumps([m.as_json() for m in messes], option=orjson.OPT_INDENT_2) + b"\n")
    return GeneratedDemo(out_dir=out_dir, sites=sites, messes_path=messes_path, messes=tuple(messes))
