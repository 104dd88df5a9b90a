"""The synthetic demo sites: deterministic, valid FHIR R4, complete timelines, planted messes."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import medicationadministration, observation, patient, procedure

from adapter import paths
from adapter.demo import generator

Json = dict[str, Any]

MODELS: dict[str, Any] = {
    "Patient": patient.Patient,
    "Observation": observation.Observation,
    "MedicationAdministration": medicationadministration.MedicationAdministration,
    "Procedure": procedure.Procedure,
}
SITES = ("demo-north", "demo-east")
LOINC = "http://loinc.org"
NORTH_LAB = "http://hospital-north.example/fhir/lab"
EAST_LIS = "http://hospital-east.example/fhir/lis"
EAST_PROCEDURE = "http://hospital-east.example/fhir/procedure"

# The codes each site is meant to send, written out independently of the generator.
SCREENING_CODES = {
    "demo-north": {
        "lvef": (LOINC, "10230-1"),
        "creatinine": (LOINC, "2160-0"),
        "alt": (LOINC, "1742-6"),
        "ast": (LOINC, "1920-8"),
        "bilirubin": (LOINC, "1975-2"),
        "spo2": (LOINC, "59408-5"),
        "ecog": (LOINC, "89247-1"),
        "dyspnea": ("http://terminology.hl7.org/CodeSystem/mdr", "10013968"),
    },
    "demo-east": {
        "lvef": (EAST_LIS, "ECHO-EF"),
        "creatinine": (EAST_LIS, "0045"),
        "alt": (EAST_LIS, "0032"),
        "ast": (EAST_LIS, "0033"),
        "bilirubin": (EAST_LIS, "0038"),
        "spo2": (EAST_LIS, "SPO2"),
        "ecog": (EAST_LIS, "PS"),
        "dyspnea": ("http://terminology.hl7.org/CodeSystem/mdr", "10013968"),
    },
}
COUNT_CODES = {
    "demo-north": {"wbc": (LOINC, "6690-2"), "plt": (LOINC, "777-3")},
    "demo-east": {"wbc": (EAST_LIS, "0101"), "plt": (EAST_LIS, "0102")},
}
MRD_CODES = {
    "demo-north": {(NORTH_LAB, "BALLM"), (NORTH_LAB, "CLONOSEQ")},
    "demo-east": {(EAST_LIS, "MRD-FCM"), (EAST_LIS, "MRD-NGS")},
}
PROCEDURE_CODES = {
    "demo-north": {
        "hsct": ("http://snomed.info/sct", "709115004"),
        "apheresis": ("http://www.ama-assn.org/go/cpt", "38206"),
        "echo": ("http://www.ama-assn.org/go/cpt", "93306"),
    },
    "demo-east": {
        "hsct": ("http://hl7.org/fhir/sid/icd-9-cm", "41.04"),
        "apheresis": (EAST_PROCEDURE, "PBSC-COLL"),
        "echo": (EAST_PROCEDURE, "UCG"),
    },
}
STUDY_DRUG = {
    "demo-north": ("http://www.nlm.nih.gov/research/umls/rxnorm", "1597262"),
    "demo-east": ("http://www.whocc.no/atc", "L01XC19"),
}
STUDY_DRUG_TEXT = {"demo-north": "Blincyto infusion", "demo-east": "贝林妥欧单抗 35ug"}
EXPECTED_MESSES = {
    "demo-north": Counter(
        {
            "not_final": 1,
            "not_given": 1,
            "withdrawn": 1,
            "duplicate": 1,
            "missing_time": 1,
            "missing_value": 1,
            "patient_not_on_roster": 1,
            "study_drug_text_only": 1,
        }
    ),
    "demo-east": Counter(
        {
            "not_given": 1,
            "withdrawn": 1,
            "unknown_unit": 1,
            "implausible_value": 1,
            "unknown_code": 1,
            "patient_not_on_roster": 1,
            "study_drug_text_only": 1,
        }
    ),
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> generator.GeneratedDemo:
    return generator.generate(tmp_path_factory.mktemp("demo"))


def _relative_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _lines(folder: Path, rtype: str) -> list[bytes]:
    return (folder / f"{rtype}.ndjson").read_bytes().splitlines()


def _resources(folder: Path, rtype: str) -> list[Json]:
    return [orjson.loads(line) for line in _lines(folder, rtype)]


def _roster(folder: Path) -> list[dict[str, str]]:
    with (folder / "roster.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _codes(concept: Json) -> set[tuple[str, str]]:
    return {(c.get("system", ""), c.get("code", "")) for c in concept.get("coding", [])}


def _when(resource: Json) -> datetime:
    for key in ("effectiveDateTime", "performedDateTime"):
        if key in resource:
            return datetime.fromisoformat(resource[key])
    period = resource.get("effectivePeriod") or resource["performedPeriod"]
    return datetime.fromisoformat(period["start"])


def _by_patient(resources: list[Json]) -> dict[str, list[Json]]:
    grouped: dict[str, list[Json]] = defaultdict(list)
    for resource in resources:
        grouped[resource["subject"]["reference"].removeprefix("Patient/")].append(resource)
    return grouped


def _roster_patient_ids(folder: Path) -> dict[str, tuple[str, date]]:
    """patient id -> (subject id, enrolment date), joined on the MRN as the adapter must."""
    by_mrn = {(row["identifier_system"], row["identifier_value"]): row for row in _roster(folder)}
    joined = {}
    for pat in _resources(folder, "Patient"):
        for ident in pat["identifier"]:
            row = by_mrn.get((ident["system"], ident["value"]))
            if row:
                joined[pat["id"]] = (row["subject_id"], date.fromisoformat(row["enrolment_date"]))
    assert len(joined) == len(by_mrn)
    return joined


def _cycles(bags: list[Json], gap: timedelta = timedelta(days=7)) -> list[list[Json]]:
    cycles: list[list[Json]] = []
    last_end: datetime | None = None
    for bag in sorted(bags, key=_when):
        start = datetime.fromisoformat(bag["effectivePeriod"]["start"])
        if last_end is None or start - last_end > gap:
            cycles.append([])
        cycles[-1].append(bag)
        end = datetime.fromisoformat(bag["effectivePeriod"]["end"])
        last_end = end if last_end is None else max(last_end, end)
    return cycles


def _is_study_drug(site: str, med: Json) -> bool:
    concept = med["medicationCodeableConcept"]
    return STUDY_DRUG[site] in _codes(concept) or concept.get("text") == STUDY_DRUG_TEXT[site]


# --------------------------------------------------------------------------


def test_regenerating_gives_the_bundled_bytes(demo: generator.GeneratedDemo) -> None:
    bundled = paths.demo_data_dir()
    assert _relative_files(bundled) == _relative_files(demo.out_dir)
    for name in _relative_files(bundled):
        hint = "regenerate with generator.generate(Path('adapter/demo/data')), never edit by hand"
        assert (bundled / name).read_bytes() == (demo.out_dir / name).read_bytes(), f"{name} differs: {hint}"


def test_layout_and_counts(demo: generator.GeneratedDemo) -> None:
    assert set(demo.sites) == set(SITES)
    assert demo.messes_path == demo.out_dir / "messes.json"
    for name, site in demo.sites.items():
        assert site.folder == demo.out_dir / name
        for rtype, path in site.files.items():
            assert path == site.folder / f"{rtype}.ndjson"
            assert len(_lines(site.folder, rtype)) == site.counts[rtype]
        assert site.counts["Patient"] == site.roster_subjects + site.patients_not_on_roster == 5
        assert [row["subject_id"] for row in _roster(site.folder)] == [
            f"NCT06507514-{name[5].upper()}-{i:03d}" for i in range(1, 5)
        ]
        header = (site.folder / "roster.csv").read_text(encoding="utf-8").splitlines()[0]
        assert header == "identifier_system,identifier_value,subject_id,enrolment_date"
    total = sum(p.stat().st_size for p in demo.out_dir.rglob("*") if p.is_file())
    assert total < 2_000_000


def test_every_line_is_valid_fhir_r4(demo: generator.GeneratedDemo) -> None:
    for site in demo.sites.values():
        raw = b"".join(path.read_bytes() for path in site.files.values())
        assert b"\r" not in raw
        for rtype, model in MODELS.items():
            for line in _lines(site.folder, rtype):
                resource = model.model_validate_json(line)
                assert resource.id and resource.meta and resource.meta.versionId and resource.meta.lastUpdated


def test_patient_ids_are_opaque(demo: generator.GeneratedDemo) -> None:
    for name, site in demo.sites.items():
        prefix = {"demo-north": "pn-", "demo-east": "pe-"}[name]
        for pat in _resources(site.folder, "Patient"):
            mrn = pat["identifier"][0]["value"]
            assert pat["id"].startswith(prefix)
            assert mrn not in pat["id"]
        for rtype in ("Observation", "MedicationAdministration", "Procedure"):
            for resource in _resources(site.folder, rtype):
                assert resource["subject"]["reference"].startswith(f"Patient/{prefix}")


def test_every_roster_subject_has_the_full_timeline(demo: generator.GeneratedDemo) -> None:
    for name, site in demo.sites.items():
        obs_by_patient = _by_patient(_resources(site.folder, "Observation"))
        med_by_patient = _by_patient(_resources(site.folder, "MedicationAdministration"))
        proc_by_patient = _by_patient(_resources(site.folder, "Procedure"))
        for patient_id, (subject, enrolment) in _roster_patient_ids(site.folder).items():
            observations = obs_by_patient[patient_id]
            for concept, code in SCREENING_CODES[name].items():
                days = [
                    _when(o).date()
                    for o in observations
                    if code in _codes(o["code"]) and "effectiveDateTime" in o
                ]
                assert any(enrolment - timedelta(days=20) <= d < enrolment for d in days), (subject, concept)

            procedures: dict[str, list[Json]] = defaultdict(list)
            for proc in proc_by_patient[patient_id]:
                assert proc["status"] == "completed"
                for kind, code in PROCEDURE_CODES[name].items():
                    if code in _codes(proc["code"]):
                        procedures[kind].append(proc)
            assert {k: len(v) for k, v in procedures.items()} == {"hsct": 1, "apheresis": 1, "echo": 1}, (
                subject
            )
            day0 = _when(procedures["hsct"][0]).date()
            collected = _when(procedures["apheresis"][0]).date()

            bags = [
                m
                for m in med_by_patient[patient_id]
                if _is_study_drug(name, m) and m["status"] == "completed"
            ]
            cycles = _cycles(bags)
            assert len(cycles) == 1 + generator.MAINTENANCE_CYCLES, subject
            for cycle in cycles:
                infused = sum(
                    (
                        datetime.fromisoformat(b["effectivePeriod"]["end"])
                        - datetime.fromisoformat(b["effectivePeriod"]["start"])
                        for b in cycle
                    ),
                    timedelta(),
                )
                assert infused == timedelta(days=28), subject
            pre_end = max(datetime.fromisoformat(b["effectivePeriod"]["end"]) for b in cycles[0]).date()
            assert timedelta(days=5) <= collected - pre_end <= timedelta(days=9), subject
            assert collected < day0
            assert all(_when(c[0]).date() > day0 for c in cycles[1:])

            mrd = [o for o in observations if _codes(o["code"]) & MRD_CODES[name]]
            assert len(mrd) == 6 and all(_when(o).date() > day0 for o in mrd), subject


def _reconstitution(site: str, observations: list[Json], day0: date) -> tuple[int, int, int]:
    """(first WBC day, first PLT day, first day both) after day 0, from usable results."""
    daily: dict[str, dict[int, float]] = {"wbc": {}, "plt": {}}
    for obs in observations:
        quantity = obs.get("valueQuantity", {})
        if obs["status"] != "final" or "value" not in quantity or "effectiveDateTime" not in obs:
            continue
        for concept, code in COUNT_CODES[site].items():
            if code in _codes(obs["code"]) and quantity["value"] < 2000:
                daily[concept][(_when(obs).date() - day0).days] = quantity["value"]
    met = {c: {d for d, v in daily[c].items() if d > 0 and v >= (3 if c == "wbc" else 50)} for c in daily}
    return min(met["wbc"]), min(met["plt"]), min(met["wbc"] & met["plt"])


def test_blood_counts_recover_between_day_12_and_20(demo: generator.GeneratedDemo) -> None:
    for name, site in demo.sites.items():
        obs_by_patient = _by_patient(_resources(site.folder, "Observation"))
        procs = _by_patient(_resources(site.folder, "Procedure"))
        leads = []
        for patient_id in _roster_patient_ids(site.folder):
            hsct = [p for p in procs[patient_id] if PROCEDURE_CODES[name]["hsct"] in _codes(p["code"])]
            wbc_day, plt_day, both = _reconstitution(name, obs_by_patient[patient_id], _when(hsct[0]).date())
            assert 12 <= both <= 20
            assert both == max(wbc_day, plt_day)
            leads.append(plt_day - wbc_day)
        assert max(leads) >= 5, "one patient per site recovers WBC several days before PLT"


def test_site_flavours(demo: generator.GeneratedDemo) -> None:
    north = demo.sites["demo-north"].folder
    east = demo.sites["demo-east"].folder
    north_obs = _resources(north, "Observation")
    east_obs = _resources(east, "Observation")
    assert all(
        o["effectiveDateTime"][-6:] in ("-06:00", "-05:00") for o in north_obs if "effectiveDateTime" in o
    )
    assert all(o["effectiveDateTime"].endswith("+08:00") for o in east_obs)
    # ECOG both as integer and as LA answer at north.
    ecog = [o for o in north_obs if (LOINC, "89247-1") in _codes(o["code"])]
    assert {"valueInteger", "valueCodeableConcept"} <= {k for o in ecog for k in o if k.startswith("value")}
    # East: local codes, LOINC beside them on some results only.
    east_labs = [o for o in east_obs if (EAST_LIS, "0101") in _codes(o["code"])]
    with_loinc = sum(1 for o in east_labs if (LOINC, "6690-2") in _codes(o["code"]))
    assert 0.25 < with_loinc / len(east_labs) < 0.75
    creatinine = [
        o for o in east_obs if (EAST_LIS, "0045") in _codes(o["code"]) and "unit" in o["valueQuantity"]
    ]
    assert {o["valueQuantity"]["unit"] for o in creatinine} == {"\u03bcmol/L"}
    doses = {m["dosage"]["dose"]["unit"] for m in _resources(east, "MedicationAdministration")}
    assert {"mg", "ug"} <= doses
    for name, site in demo.sites.items():
        observations = _resources(site.folder, "Observation")
        spo2 = [o for o in observations if SCREENING_CODES[name]["spo2"] in _codes(o["code"])]
        flows = {o["effectiveDateTime"] for o in observations if (LOINC, "3151-8") in _codes(o["code"])}
        without_o2 = [o for o in spo2 if "component" not in o and o["effectiveDateTime"] not in flows]
        assert len(without_o2) == 1, name
        near_midnight = [
            o for o in observations if "effectiveDateTime" in o and _when(o).time().hour in (23, 0)
        ]
        assert near_midnight, name
        meds = _resources(site.folder, "MedicationAdministration")
        assert sum(1 for m in meds if m["status"] == "not-done") == 1


def test_messes_refer_to_resources_that_exist(demo: generator.GeneratedDemo) -> None:
    messes = orjson.loads(demo.messes_path.read_bytes())
    assert [m["site"] for m in messes] == [m.site for m in demo.messes]
    for name in SITES:
        assert Counter(m["kind"] for m in messes if m["site"] == name) == EXPECTED_MESSES[name]
    for mess in messes:
        assert list(mess) == ["site", "kind", "resource", "note"]
        folder = demo.sites[mess["site"]].folder
        if mess["resource"].startswith("code:"):
            system, code = mess["resource"].removeprefix("code:").split("|")
            users = {
                o["subject"]["reference"]
                for o in _resources(folder, "Observation")
                if (system, code) in _codes(o["code"])
            }
            assert len(users) == 2
            continue
        rtype, rid = mess["resource"].split("/")
        found = [r for r in _resources(folder, rtype) if r["id"] == rid]
        assert found, mess
        _check_mess(mess["kind"], found, folder, mess["site"])


def _check_mess(kind: str, found: list[Json], folder: Path, site: str) -> None:
    resource = found[0]
    if kind == "duplicate":
        assert len(found) == 2 and found[0] == found[1]
        return
    assert len(found) == 1
    if kind == "not_final":
        assert resource["status"] == "preliminary"
    elif kind == "withdrawn":
        assert resource["status"] == "entered-in-error"
    elif kind == "not_given":
        assert resource["status"] == "not-done" and resource["resourceType"] == "MedicationAdministration"
    elif kind == "unknown_unit":
        assert list(resource["valueQuantity"]) == ["value"]
    elif kind == "missing_time":
        assert not {k for k in resource if k.startswith("effective")} and "issued" not in resource
    elif kind == "missing_value":
        assert "dataAbsentReason" in resource and not [k for k in resource if k.startswith("value")]
    elif kind == "implausible_value":
        assert resource["valueQuantity"]["value"] == 9999
    elif kind == "study_drug_text_only":
        assert resource["medicationCodeableConcept"] == {"text": STUDY_DRUG_TEXT[site]}
    elif kind == "patient_not_on_roster":
        assert resource["id"] not in _roster_patient_ids(folder)
        assert any(
            m["subject"]["reference"] == f"Patient/{resource['id']}"
            for m in _resources(folder, "MedicationAdministration")
        )
    else:
        pytest.fail(f"unexpected mess kind {kind}")


def test_names_and_mrns_only_in_patient_and_roster(demo: generator.GeneratedDemo) -> None:
    messes_text = demo.messes_path.read_text(encoding="utf-8")
    for site in demo.sites.values():
        secrets: set[str] = set()
        for pat in _resources(site.folder, "Patient"):
            secrets.update(ident["value"] for ident in pat["identifier"])
            for name in pat["name"]:
                parts = [
                    name.get("text", ""),
                    name["family"],
                    *name["given"],
                    "".join([name["family"], *name["given"]]),
                ]
                secrets.update(p for p in parts if len(p) >= 2)
        assert secrets
        elsewhere = [site.files[rtype] for rtype in ("Observation", "MedicationAdministration", "Procedure")]
        for path in elsewhere:
            text = path.read_text(encoding="utf-8")
            assert not [s for s in secrets if s in text], path.name
        assert not [s for s in secrets if s in messes_text]


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    first = generator.generate(tmp_path / "a", patients_per_site=2, seed=11)
    again = generator.generate(tmp_path / "b", patients_per_site=2, seed=11)
    other = generator.generate(tmp_path / "c", patients_per_site=2, seed=12)
    for name in SITES:
        for rtype, path in first.sites[name].files.items():
            assert path.read_bytes() == again.sites[name].files[rtype].read_bytes()
        assert (first.sites[name].folder / "roster.csv").read_bytes() != (
            other.sites[name].folder / "roster.csv"
        ).read_bytes()
        assert (
            first.sites[name].files["Observation"].read_bytes()
            != other.sites[name].files["Observation"].read_bytes()
        )


@pytest.mark.parametrize("patients", [1, 12])
def test_any_site_size_keeps_every_mess_once(tmp_path: Path, patients: int) -> None:
    demo = generator.generate(tmp_path, patients_per_site=patients)
    for name in SITES:
        assert Counter(m.kind for m in demo.messes if m.site == name) == EXPECTED_MESSES[name]
        assert len(_roster(demo.sites[name].folder)) == patients


def test_rejects_empty_sites(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        generator.generate(tmp_path, patients_per_site=0)


def test_summary_line_names_counts(demo: generator.GeneratedDemo) -> None:
    line = str(demo)
    assert "demo-north: 5 Patient" in line and "demo-east: 5 Patient" in line
    assert line.endswith(f"{len(demo.messes)} planted messes")
