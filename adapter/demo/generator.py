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
can check the adapter finds exactly these.

Everything is a pure function of ``(patients_per_site, seed)``: one
``random.Random(seed)`` feeds every choice, dates hang off a fixed 2025 base
date, JSON keys are written in a fixed order and lines end in ``\\n``.
Regenerating therefore gives byte-identical files, which is what the bundled
copy in ``adapter/demo/data/`` is checked against.  Resources are written to
disk as they are made, so ``patients_per_site=500`` stays fast and small in
memory.

Nothing here is real patient data: names come from short fixed lists and
identifiers are random.
"""

from __future__ import annotations

import csv
import dataclasses
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

Json = dict[str, Any]

STUDY = "NCT06507514"
RESOURCE_TYPES = ("Patient", "Observation", "MedicationAdministration", "Procedure")
ROSTER_COLUMNS = ("identifier_system", "identifier_value", "subject_id", "enrolment_date")

# Enrolments are spread over most of 2025 whatever the number of patients.
BASE_ENROLMENT = date(2025, 1, 13)
ENROLMENT_SPAN_DAYS = 300

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
CPT = "http://www.ama-assn.org/go/cpt"
ICD9CM = "http://hl7.org/fhir/sid/icd-9-cm"
MEDDRA = "http://terminology.hl7.org/CodeSystem/mdr"
CTCAE_GRADE = "http://hl7.org/fhir/us/ctcae/CodeSystem/ctcae-grade-code-system"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"

NORTH_LAB = "http://hospital-north.example/fhir/lab"
EAST_LIS = "http://hospital-east.example/fhir/lis"
EAST_PROCEDURE = "http://hospital-east.example/fhir/procedure"

# Protocol regimen (docs/terminology.md §9): 28 days of continuous infusion at
# 28 mcg/day, then 14 days off; bags last 1-4 days.
INFUSION_DAYS_PER_CYCLE = 28
DOSE_UG_PER_DAY = 28
DAYS_OFF_BETWEEN_CYCLES = 14
MAINTENANCE_CYCLES = 4
# Label bag table: 240 mL bags run at 10 / 5 / 3.3 / 2.5 mL/h for 24-96 h.
RATE_ML_PER_H = {1: 10.0, 2: 5.0, 3: 3.3, 4: 2.5}

# LOINC long names, shared by both sites (docs/terminology.md §2-§5).
LVEF_DISPLAY = "Left ventricular Ejection fraction"
CREATININE_MASS_DISPLAY = "Creatinine [Mass/volume] in Serum or Plasma"
BILIRUBIN_MASS_DISPLAY = "Bilirubin.total [Mass/volume] in Serum or Plasma"
SPO2_DISPLAY = "Oxygen saturation in Arterial blood by Pulse oximetry"
O2_FLOW_DISPLAY = "Inhaled oxygen flow rate"
ECOG_DISPLAY = "ECOG Performance Status score"
WBC_DISPLAY = "Leukocytes [#/volume] in Blood by Automated count"
PLT_DISPLAY = "Platelets [#/volume] in Blood by Automated count"
ALT_LOINC_DISPLAY = "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma"
AST_LOINC_DISPLAY = "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma"

CATEGORY_DISPLAY = {
    "laboratory": "Laboratory",
    "vital-signs": "Vital Signs",
    "survey": "Survey",
    "imaging": "Imaging",
}
INTRAVENOUS = {"coding": [{"system": SNOMED, "code": "47625008", "display": "Intravenous route"}]}
SUBCUTANEOUS = {"coding": [{"system": SNOMED, "code": "34206005", "display": "Subcutaneous route"}]}
ECOG_ANSWERS = {
    0: ("LA9622-7", "Fully active, able to carry on all pre-disease performance without restriction"),
    1: ("LA9623-5", "Restricted in physically strenuous activity but ambulatory"),
    2: ("LA9624-3", "Ambulatory and capable of all selfcare but unable to carry out any work activities"),
}
CTCAE_GRADE_DISPLAY = {0: "Absent Adverse Event", 1: "Mild Adverse Event"}


# --------------------------------------------------------------------------
# Site profiles: how each fake hospital codes the same clinical facts.


@dataclass(frozen=True)
class LabCode:
    """How one site codes one Observation concept.

    Values are generated in the protocol's canonical unit (mg/dL, U/L,
    10^9/L, %) and converted here with ``factor`` so that both sites tell the
    same clinical story in their own units.
    """

    codings: tuple[Json, ...]
    text: str
    category: str
    unit: str | None = None
    ucum: str | None = None
    factor: float = 1.0
    decimals: int = 2
    # demo-east: a LOINC coding sent beside the local one on about half of
    # the results, as Chinese LIS systems that are half-way through a LOINC
    # mapping project do.
    loinc_beside: Json | None = None


def _coding(system: str, code: str, display: str) -> Json:
    return {"system": system, "code": code, "display": display}


def _concept(system: str, code: str, display: str, text: str | None = None) -> Json:
    concept: Json = {"coding": [_coding(system, code, display)]}
    if text:
        concept["text"] = text
    return concept


@dataclass(frozen=True)
class SiteProfile:
    """Everything that differs between the two demo hospitals."""

    name: str
    letter: str
    patient_prefix: str
    mrn_system: str
    mrn_prefix: str
    mrn_digits: int
    utc_offset: Callable[[datetime], timedelta]
    labs: Mapping[str, LabCode]
    uln: Mapping[str, float]
    study_drug: Json
    study_drug_text_only: str
    gcsf: Json
    procedures: Mapping[str, Json]
    dose_in_mg_share: float
    failed_criterion: str
    # Minutes after local midnight of the screening day for the one panel
    # drawn close to midnight (negative: the evening before).
    midnight_draw_minutes: int
    ecog_as_answer_share: float
    # Roles handed out to roster patients; a role listed twice goes to two
    # patients.  Messes not listed for a site are planted at the other one.
    roles: tuple[str, ...]
    family_names: tuple[str, ...]
    given_names: Mapping[str, tuple[str, ...]]
    name_as_text: bool


def _nth_sunday(year: int, month: int, n: int) -> datetime:
    first = datetime(year, month, 1)
    return first + timedelta(days=(6 - first.weekday()) % 7 + 7 * (n - 1))


def us_central_offset(local: datetime) -> timedelta:
    """UTC offset of US Central time for a local wall-clock time.

    Hand-rolled US rule (DST from the 2nd Sunday of March to the 1st Sunday of
    November, 02:00 local) instead of ``zoneinfo``: the output must not depend
    on whether, or which version of, a tz database is installed.
    """
    start = _nth_sunday(local.year, 3, 2).replace(hour=2)
    end = _nth_sunday(local.year, 11, 1).replace(hour=2)
    return timedelta(hours=-5) if start <= local < end else timedelta(hours=-6)


def china_offset(local: datetime) -> timedelta:
    """China Standard Time: +08:00 all year, no DST."""
    return timedelta(hours=8)


def _standard_lab(
    code: str,
    display: str,
    text: str,
    unit: str | None,
    *,
    decimals: int,
    category: str = "laboratory",
    system: str = LOINC,
    also: Json | None = None,
) -> LabCode:
    """A result coded with a standard code (LOINC; the lab's own code for MRD at north) and UCUM units."""
    codings = (_coding(system, code, display),) + ((also,) if also else ())
    return LabCode(codings, text, category, unit, unit, decimals=decimals)


SHARED_ROLES = (
    "ineligible",
    "no_oxygen_info",
    "near_midnight",
    "overlap_bag",
    "not_done_bag",
    "study_drug_text_only",
    "entered_in_error",
)

NORTH = SiteProfile(
    name="demo-north",
    letter="N",
    patient_prefix="pn",
    mrn_system="http://hospital-north.example/fhir/mrn",
    mrn_prefix="NM",
    mrn_digits=7,
    utc_offset=us_central_offset,
    labs={
        "lvef": _standard_lab("10230-1", LVEF_DISPLAY, "LVEF (echo)", "%", decimals=0, category="imaging"),
        "creatinine": _standard_lab("2160-0", CREATININE_MASS_DISPLAY, "Creatinine", "mg/dL", decimals=2),
        "alt": _standard_lab("1742-6", ALT_LOINC_DISPLAY, "ALT", "U/L", decimals=0),
        "ast": _standard_lab("1920-8", AST_LOINC_DISPLAY, "AST", "U/L", decimals=0),
        "bilirubin": _standard_lab("1975-2", BILIRUBIN_MASS_DISPLAY, "Bilirubin, total", "mg/dL", decimals=1),
        # US Core pulse oximetry carries both codes in one coding list.
        "spo2": _standard_lab(
            "59408-5",
            SPO2_DISPLAY,
            "SpO2",
            "%",
            decimals=0,
            category="vital-signs",
            also=_coding(LOINC, "2708-6", "Oxygen saturation in Arterial blood"),
        ),
        "o2_flow": _standard_lab(
            "3151-8", O2_FLOW_DISPLAY, "O2 flow", "L/min", decimals=0, category="vital-signs"
        ),
        "ecog": _standard_lab("89247-1", ECOG_DISPLAY, "ECOG", None, decimals=0, category="survey"),
        "dyspnea": LabCode((_coding(MEDDRA, "10013968", "Dyspnoea"),), "Dyspnea (CTCAE v5 grade)", "survey"),
        "wbc": _standard_lab("6690-2", WBC_DISPLAY, "WBC", "10*3/uL", decimals=2),
        "plt": _standard_lab("777-3", PLT_DISPLAY, "Platelets", "10*3/uL", decimals=0),
        "mrd_flow": _standard_lab(
            "BALLM", "B-ALL MRD by flow cytometry", "B-ALL MRD, flow", "%", decimals=4, system=NORTH_LAB
        ),
        "mrd_ngs": _standard_lab(
            "CLONOSEQ", "clonoSEQ IgH NGS MRD", "clonoSEQ MRD", "%", decimals=5, system=NORTH_LAB
        ),
    },
    uln={"alt": 40, "ast": 40},
    study_drug=_concept(RXNORM, "1597262", "blinatumomab 0.035 MG Injection", "Blincyto"),
    study_drug_text_only="Blincyto infusion",
    gcsf=_concept(RXNORM, "68442", "filgrastim", "Neupogen"),
    procedures={
        "hsct": _concept(
            SNOMED, "709115004", "Transplantation of autologous hematopoietic stem cell (procedure)"
        ),
        "apheresis": _concept(
            CPT,
            "38206",
            "Blood-derived hematopoietic progenitor cell harvesting for "
            "transplantation, per collection; autologous",
        ),
        "echo": _concept(
            CPT, "93306", "Echocardiography, transthoracic, complete, with spectral and color flow Doppler"
        ),
    },
    dose_in_mg_share=0.0,
    failed_criterion="lvef",
    midnight_draw_minutes=-22,  # 23:38 the evening before: already the next day in UTC
    ecog_as_answer_share=0.5,
    roles=(*SHARED_ROLES, "wbc_first", "preliminary", "duplicate", "missing_time", "missing_value"),
    family_names=(
        "Lindqvist",
        "Okafor",
        "Brennan",
        "Castellano",
        "Whitfield",
        "Nakamura",
        "Delacroix",
        "Abernathy",
        "Sorensen",
        "Halloran",
        "Vasquez",
        "Pemberton",
    ),
    given_names={
        "female": ("Avery", "Marisol", "Greta", "Imani", "Colette", "Rowan"),
        "male": ("Desmond", "Tobias", "Anders", "Malik", "Everett", "Rafael"),
    },
    name_as_text=False,
)


def _east_lab(
    code: str,
    display: str,
    unit: str | None,
    ucum: str | None,
    *,
    decimals: int,
    loinc: Json | None = None,
    factor: float = 1.0,
    category: str = "laboratory",
) -> LabCode:
    """A demo-east LIS item: local code with a Chinese display, optional LOINC beside it."""
    return LabCode(
        (_coding(EAST_LIS, code, display),),
        display,
        category,
        unit,
        ucum,
        factor=factor,
        decimals=decimals,
        loinc_beside=loinc,
    )


# Chinese LIS output: the unit is printed with a Greek mu (GB2312 has no
# micro sign), and count units are free text, sometimes without UCUM code.
EAST = SiteProfile(
    name="demo-east",
    letter="E",
    patient_prefix="pe",
    mrn_system="http://hospital-east.example/fhir/mrn",
    mrn_prefix="ZY",
    mrn_digits=8,
    utc_offset=china_offset,
    labs={
        "lvef": _east_lab(
            "ECHO-EF",
            "左室射血分数",
            "%",
            "%",
            decimals=0,
            category="imaging",
            loinc=_coding(LOINC, "10230-1", LVEF_DISPLAY),
        ),
        "creatinine": _east_lab(
            "0045",
            "肌酐",
            "\u03bcmol/L",
            "umol/L",
            decimals=0,
            factor=88.4,
            loinc=_coding(LOINC, "14682-9", "Creatinine [Moles/volume] in Serum or Plasma"),
        ),
        "alt": _east_lab(
            "0032",
            "丙氨酸氨基转移酶",
            "IU/L",
            None,
            decimals=0,
            loinc=_coding(LOINC, "1742-6", ALT_LOINC_DISPLAY),
        ),
        "ast": _east_lab(
            "0033",
            "天门冬氨酸氨基转移酶",
            "U/L",
            "U/L",
            decimals=0,
            loinc=_coding(LOINC, "1920-8", AST_LOINC_DISPLAY),
        ),
        "bilirubin": _east_lab(
            "0038",
            "总胆红素",
            "\u03bcmol/L",
            "umol/L",
            decimals=1,
            factor=17.1,
            loinc=_coding(LOINC, "14631-6", "Bilirubin.total [Moles/volume] in Serum or Plasma"),
        ),
        "spo2": _east_lab(
            "SPO2",
            "血氧饱和度",
            "%",
            "%",
            decimals=0,
            category="vital-signs",
            loinc=_coding(LOINC, "59408-5", SPO2_DISPLAY),
        ),
        "o2_flow": _standard_lab(
            "3151-8", O2_FLOW_DISPLAY, "吸氧流量", "L/min", decimals=0, category="vital-signs"
        ),
        "ecog": _east_lab(
            "PS",
            "体能状态评分(ECOG)",
            None,
            None,
            decimals=0,
            category="survey",
            loinc=_coding(LOINC, "89247-1", ECOG_DISPLAY),
        ),
        "dyspnea": LabCode((_coding(MEDDRA, "10013968", "Dyspnoea"),), "呼吸困难(CTCAE分级)", "survey"),
        "wbc": _east_lab(
            "0101",
            "白细胞计数",
            "×10^9/L",
            None,
            decimals=2,
            loinc=_coding(LOINC, "6690-2", WBC_DISPLAY),
        ),
        "plt": _east_lab(
            "0102",
            "血小板计数",
            "10^9/L",
            "10*9/L",
            decimals=0,
            loinc=_coding(LOINC, "777-3", PLT_DISPLAY),
        ),
        "mrd_flow": _east_lab("MRD-FCM", "微小残留病(流式细胞术)", "%", "%", decimals=4),
        "mrd_ngs": _east_lab("MRD-NGS", "微小残留病(IgH高通量测序)", "%", "%", decimals=5),
        "sodium": _east_lab("0099", "钠", "mmol/L", "mmol/L", decimals=0),
    },
    uln={"alt": 50, "ast": 40},
    study_drug=_concept(ATC, "L01XC19", "注射用贝林妥欧单抗", "注射用贝林妥欧单抗 35μg"),
    study_drug_text_only="贝林妥欧单抗 35ug",
    gcsf=_concept(ATC, "L03AA02", "重组人粒细胞刺激因子注射液"),
    procedures={
        "hsct": _concept(ICD9CM, "41.04", "自体造血干细胞移植"),
        "apheresis": _concept(EAST_PROCEDURE, "PBSC-COLL", "外周血干细胞采集"),
        "echo": _concept(EAST_PROCEDURE, "UCG", "超声心动图"),
    },
    dose_in_mg_share=0.3,
    failed_criterion="alt",
    midnight_draw_minutes=17,  # 00:17 local: still the previous day in UTC
    ecog_as_answer_share=0.0,
    roles=(*SHARED_ROLES, "implausible_platelet", "unknown_unit", "unknown_code", "unknown_code"),
    family_names=("王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙"),
    given_names={
        "female": ("雨桐", "欣怡", "婉清", "梓萱", "嘉怡", "思琪"),
        "male": ("浩然", "俊杰", "宇航", "一鸣", "子轩", "明远"),
    },
    name_as_text=True,
)

SITES: tuple[SiteProfile, ...] = (NORTH, EAST)


# --------------------------------------------------------------------------
# Output bookkeeping.


@dataclass(frozen=True)
class Mess:
    """One planted problem and the issue kind the adapter should raise for it."""

    site: str
    kind: str
    resource: str
    note: str

    def as_json(self) -> Json:
        return {"site": self.site, "kind": self.kind, "resource": self.resource, "note": self.note}


@dataclass(frozen=True)
class SiteOutput:
    """What was written for one site: file paths and lines per file."""

    site: str
    folder: Path
    roster: Path
    files: Mapping[str, Path]
    counts: Mapping[str, int]
    roster_subjects: int
    patients_not_on_roster: int


@dataclass(frozen=True)
class GeneratedDemo:
    """The result of :func:`generate`."""

    out_dir: Path
    sites: Mapping[str, SiteOutput]
    messes_path: Path
    messes: tuple[Mess, ...]

    def __str__(self) -> str:
        """One line for the CLI: lines written per site and the number of planted messes."""
        per_site = "; ".join(
            f"{name}: " + ", ".join(f"{count} {rtype}" for rtype, count in site.counts.items())
            for name, site in self.sites.items()
        )
        return f"{per_site}; {len(self.messes)} planted messes"


class SiteFiles:
    """The four NDJSON files of one site, appended to as resources are made.

    Streaming keeps memory flat for benchmark-sized sites; orjson keeps the
    dict's insertion order, so key order is fixed by the builders below.
    """

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.paths = {rtype: folder / f"{rtype}.ndjson" for rtype in RESOURCE_TYPES}
        self.counts = dict.fromkeys(RESOURCE_TYPES, 0)
        self._handles: dict[str, IO[bytes]] = {}
        try:
            for rtype, path in self.paths.items():
                self._handles[rtype] = path.open("wb")
        except OSError:
            self.close()
            raise

    def emit(self, resource: Json) -> None:
        rtype = resource["resourceType"]
        self._handles[rtype].write(orjson.dumps(resource) + b"\n")
        self.counts[rtype] += 1

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()

    def __enter__(self) -> SiteFiles:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


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


# --------------------------------------------------------------------------
# Small builders shared by all resource kinds.


def _stamp(site: SiteProfile, local: datetime) -> str:
    """A FHIR dateTime in the site's local time with its UTC offset."""
    return local.replace(tzinfo=timezone(site.utc_offset(local))).isoformat(timespec="seconds")


def _server_instant(site: SiteProfile, local: datetime) -> str:
    """A FHIR instant in UTC, as servers write ``meta.lastUpdated``."""
    utc = local - site.utc_offset(local)
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def _elapsed(site: SiteProfile, local: datetime, duration: timedelta) -> datetime:
    """The local wall-clock time ``duration`` of real time after ``local``.

    Infusion pumps count hours, not wall-clock days: a 48 h bag hung the day
    before a DST change comes down at a different clock time.
    """
    end_utc = local - site.utc_offset(local) + duration
    for offset in (site.utc_offset(local), site.utc_offset(local + duration)):
        if site.utc_offset(end_utc + offset) == offset:
            return end_utc + offset
    return end_utc + site.utc_offset(local + duration)


def _meta(site: SiteProfile, updated_local: datetime, version: int = 1) -> Json:
    return {"versionId": str(version), "lastUpdated": _server_instant(site, updated_local)}


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute))


def _morning(rng: random.Random, day: date, first_hour: int = 5, last_hour: int = 7) -> datetime:
    """A blood draw time: ward phlebotomy rounds are early in the morning."""
    return _at(day, rng.randint(first_hour, last_hour), rng.randrange(60))


def _number(value: float, decimals: int) -> float | int:
    rounded = round(value, decimals)
    return int(rounded) if decimals == 0 else rounded


def _quantity(lab: LabCode, site_value: float | int) -> Json:
    quantity: Json = {"value": site_value}
    if lab.unit is not None:
        quantity["unit"] = lab.unit
    if lab.ucum is not None:
        quantity["system"] = UCUM
        quantity["code"] = lab.ucum
    return quantity


def _site_value(lab: LabCode, canonical: float) -> float | int:
    return _number(canonical * lab.factor, lab.decimals)


def _category(code: str) -> list[Json]:
    return [{"coding": [_coding(OBSERVATION_CATEGORY, code, CATEGORY_DISPLAY[code])]}]


def _observation_code(run: PatientRun, lab: LabCode) -> Json:
    codings = list(lab.codings)
    if lab.loinc_beside is not None and run.rng.random() < 0.5:
        codings.append(lab.loinc_beside)
    return {"coding": codings, "text": lab.text}


def _observation(
    run: PatientRun,
    concept: str,
    when: datetime,
    *,
    status: str = "final",
    version: int = 1,
    timed: bool = True,
    result_delay_minutes: int | None = None,
) -> Json:
    """The common head of an Observation; callers append the value keys.

    ``timed=False`` leaves out effective[x] and issued (the missing-time mess);
    ``when`` still drives ``meta.lastUpdated``.
    """
    site = run.site
    lab = site.labs[concept]
    delay = result_delay_minutes if result_delay_minutes is not None else run.rng.randint(35, 240)
    issued = when + timedelta(minutes=delay)
    updated = issued + timedelta(minutes=2 + (version - 1) * 1440)
    obs: Json = {
        "resourceType": "Observation",
        "id": run.new_id("obs"),
        "meta": _meta(site, updated, version),
        "status": status,
        "category": _category(lab.category),
        "code": _observation_code(run, lab),
        "subject": run.subject,
    }
    if timed:
        obs["effectiveDateTime"] = _stamp(site, when)
        obs["issued"] = _stamp(site, issued)
    return obs


def _measurement(
    run: PatientRun,
    concept: str,
    when: datetime,
    canonical: float,
    *,
    status: str = "final",
    version: int = 1,
    timed: bool = True,
    result_delay_minutes: int | None = None,
) -> Json:
    """A numeric result, converted into the site's unit."""
    lab = run.site.labs[concept]
    obs = _observation(
        run,
        concept,
        when,
        status=status,
        version=version,
        timed=timed,
        result_delay_minutes=result_delay_minutes,
    )
    obs["valueQuantity"] = _quantity(lab, _site_value(lab, canonical))
    if concept in run.site.uln:
        uln = run.site.uln[concept]
        obs["referenceRange"] = [
            {"low": _quantity(lab, 7 if concept == "alt" else 10), "high": _quantity(lab, _number(uln, 0))}
        ]
    return obs


# --------------------------------------------------------------------------
# Patient and roster.


@dataclass(frozen=True)
class Identity:
    """A synthetic patient: only Patient.ndjson and roster.csv ever show it."""

    patient_id: str
    mrn: str
    family: str
    given: str
    gender: str
    birth_date: date


def _identity(
    site: SiteProfile, rng: random.Random, ids: IdPool, mrns: set[str], enrolment: date
) -> Identity:
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


def _patient_resource(site: SiteProfile, who: Identity, registered: datetime) -> Json:
    name: Json = {"use": "official"}
    if site.name_as_text:
        name["text"] = f"{who.family}{who.given}"
    name["family"] = who.family
    name["given"] = [who.given]
    return {
        "resourceType": "Patient",
        "id": who.patient_id,
        "meta": _meta(site, registered),
        "identifier": [
            {
                "use": "usual",
                "type": {"coding": [_coding(IDENTIFIER_TYPE, "MR", "Medical record number")]},
                "system": site.mrn_system,
                "value": who.mrn,
            }
        ],
        "name": [name],
        "gender": who.gender,
        "birthDate": who.birth_date.isoformat(),
    }


def _enrolment_dates(rng: random.Random, count: int) -> list[date]:
    """Enrolment dates spread evenly over 2025, with a little jitter."""
    spacing = ENROLMENT_SPAN_DAYS / count
    jitter = max(1, int(spacing // 2))
    return [BASE_ENROLMENT + timedelta(days=int(i * spacing) + rng.randrange(jitter)) for i in range(count)]


def _assign_roles(site: SiteProfile, rng: random.Random, count: int) -> list[frozenset[str]]:
    """Hand the site's special roles to distinct patients where there are enough."""
    order = list(range(count))
    rng.shuffle(order)
    held: list[set[str]] = [set() for _ in range(count)]
    for k, role in enumerate(site.roles):
        held[order[k % count]].add(role)
    return [frozenset(roles) for roles in held]


# --------------------------------------------------------------------------
# Timeline phase 1: screening (E-20 .. E-1).


@dataclass(frozen=True)
class ScreeningValues:
    """Organ-function values in canonical units (mg/dL, U/L, %)."""

    lvef: float
    creatinine: float
    alt: float
    ast: float
    bilirubin: float
    spo2: float
    ecog: int
    dyspnea: int


def _screening_values(run: PatientRun) -> ScreeningValues:
    """Mostly eligible values; the ``ineligible`` patient fails exactly one criterion."""
    rng = run.rng
    values = ScreeningValues(
        lvef=rng.randint(55, 68),
        creatinine=rng.uniform(0.6, 1.2),
        alt=rng.uniform(12, 45),
        ast=rng.uniform(14, 38),
        bilirubin=rng.uniform(0.3, 1.1),
        spo2=rng.randint(95, 99),
        ecog=rng.choice((0, 0, 1)),
        dyspnea=rng.choice((0, 0, 1)),
    )
    if not run.has("ineligible"):
        return values
    if run.site.failed_criterion == "lvef":
        return dataclasses.replace(values, lvef=45)
    return dataclasses.replace(values, alt=run.site.uln["alt"] * 3.44)


def screening(run: PatientRun) -> None:
    """Eligibility evidence (docs/design.md §4) inside the 28-day window before enrolment."""
    rng = run.rng
    values = _screening_values(run)
    echo_day = run.enrolment - timedelta(days=rng.randint(6, 20))
    lab_day = run.enrolment - timedelta(days=rng.randint(2, 12))
    visit_day = run.enrolment - timedelta(days=rng.randint(1, 5))
    _echocardiogram(run, _at(echo_day, rng.randint(9, 15), rng.randrange(60)), values.lvef)
    if run.has("near_midnight"):
        # Protocol days are local days: this panel's UTC date differs from its local date.
        drawn = _at(lab_day, 0) + timedelta(minutes=run.site.midnight_draw_minutes)
    else:
        drawn = _at(lab_day, rng.randint(7, 11), rng.randrange(60))
    _chemistry_panel(run, drawn, values)
    vitals_time = _at(visit_day, rng.randint(8, 15), rng.randrange(60))
    _pulse_oximetry(run, vitals_time, values.spo2)
    _ecog(run, vitals_time + timedelta(minutes=10), values.ecog)
    _dyspnea_grade(run, vitals_time + timedelta(minutes=12), values.dyspnea)


def _echocardiogram(run: PatientRun, when: datetime, lvef: float) -> None:
    """Screening TTE: a Procedure plus the LVEF it measured."""
    run.out.emit(
        {
            "resourceType": "Procedure",
            "id": run.new_id("prc"),
            "meta": _meta(run.site, when + timedelta(hours=3)),
            "status": "completed",
            "code": run.site.procedures["echo"],
            "subject": run.subject,
            "performedDateTime": _stamp(run.site, when),
        }
    )
    run.out.emit(_measurement(run, "lvef", when + timedelta(minutes=40), lvef))


def _chemistry_panel(run: PatientRun, drawn: datetime, values: ScreeningValues) -> None:
    """Creatinine, ALT, AST, bilirubin from one draw, with this patient's messes."""
    if run.has("unknown_unit"):
        _creatinine_without_unit(run, drawn - timedelta(days=2), values.creatinine)
    if run.has("entered_in_error"):
        _retracted_creatinine(run, drawn, values.creatinine)
    else:
        run.out.emit(_measurement(run, "creatinine", drawn, values.creatinine))
    run.out.emit(_measurement(run, "alt", drawn, values.alt))
    run.out.emit(_measurement(run, "ast", drawn, values.ast))
    run.out.emit(_measurement(run, "bilirubin", drawn, values.bilirubin))
    if run.has("unknown_code"):
        _sodium(run, drawn)
    if run.has("missing_time"):
        _untimed_ast(run, drawn, values.ast)


def _retracted_creatinine(run: PatientRun, drawn: datetime, creatinine: float) -> None:
    """A mis-keyed result retracted as entered-in-error, plus the corrected result.

    The wrong value would fail eligibility, so an adapter that does not drop
    entered-in-error results gets this patient wrong.
    """
    wrong = _measurement(
        run,
        "creatinine",
        drawn,
        creatinine * 10,
        status="entered-in-error",
        version=2,
        result_delay_minutes=60,
    )
    corrected = _measurement(run, "creatinine", drawn, creatinine, result_delay_minutes=300)
    run.out.emit(wrong)
    run.out.emit(corrected)
    run.mess(
        "not_final",
        f"Observation/{wrong['id']}",
        f"creatinine retracted as entered-in-error (decimal slip); the corrected result is "
        f"Observation/{corrected['id']} with the same effective time",
    )


def _creatinine_without_unit(run: PatientRun, drawn: datetime, creatinine: float) -> None:
    """An earlier creatinine sent with a bare number: mg/dL or umol/L cannot be told."""
    obs = _measurement(run, "creatinine", drawn, creatinine)
    obs["valueQuantity"] = {"value": obs["valueQuantity"]["value"]}
    run.out.emit(obs)
    run.mess(
        "unknown_unit",
        f"Observation/{obs['id']}",
        "creatinine valueQuantity has a value but no unit, system or code; "
        "a later creatinine with a unit exists",
    )


def _sodium(run: PatientRun, drawn: datetime) -> None:
    """A local lab code outside the protocol catalog (found by discover)."""
    run.out.emit(_measurement(run, "sodium", drawn, run.rng.randint(136, 144)))
    lab = run.site.labs["sodium"]
    code = lab.codings[0]
    resource = f"code:{code['system']}|{code['code']}"
    if not any(m.resource == resource for m in run.messes):
        run.mess(
            "unknown_code",
            resource,
            "local LIS code 0099 (钠, sodium) is not a protocol concept; sent for two patients",
        )


def _untimed_ast(run: PatientRun, drawn: datetime, ast: float) -> None:
    """An extra AST with neither effective[x] nor issued."""
    obs = _measurement(run, "ast", drawn + timedelta(hours=2), ast, timed=False)
    run.out.emit(obs)
    run.mess(
        "missing_time",
        f"Observation/{obs['id']}",
        "AST result without effective[x] and without issued; a timed AST exists the same day",
    )


def _pulse_oximetry(run: PatientRun, when: datetime, spo2: float) -> None:
    """SpO2 with the room-air evidence in one of the shapes seen in EHRs.

    The SpO2 criterion needs "without supplemental oxygen" (on room air,
    docs/design.md §4): some systems put the O2 flow or FiO2 in a component,
    some chart the flow as its own Observation at the same time, and some
    send nothing (criterion unknown).
    """
    rng = run.rng
    obs = _measurement(run, "spo2", when, spo2, result_delay_minutes=rng.randint(1, 10))
    shape = "none" if run.has("no_oxygen_info") else rng.choice(("flow", "fio2", "separate"))
    if shape == "flow":
        obs["component"] = [
            {
                "code": {"coding": [_coding(LOINC, "3151-8", "Inhaled oxygen flow rate")]},
                "valueQuantity": {"value": 0, "unit": "L/min", "system": UCUM, "code": "L/min"},
            }
        ]
    elif shape == "fio2":
        obs["component"] = [
            {
                "code": {"coding": [_coding(LOINC, "3150-0", "Inhaled oxygen concentration")]},
                "valueQuantity": {"value": 21, "unit": "%", "system": UCUM, "code": "%"},
            }
        ]
    run.out.emit(obs)
    if shape == "separate":
        run.out.emit(_measurement(run, "o2_flow", when, 0, result_delay_minutes=rng.randint(1, 10)))


def _ecog(run: PatientRun, when: datetime, score: int) -> None:
    """ECOG as valueInteger, or as an LA answer code (both shapes exist, docs/terminology.md §5)."""
    obs = _observation(run, "ecog", when, result_delay_minutes=5)
    if run.rng.random() < run.site.ecog_as_answer_share:
        code, display = ECOG_ANSWERS[score]
        obs["valueCodeableConcept"] = {"coding": [_coding(LOINC, code, display)]}
    else:
        obs["valueInteger"] = score
    run.out.emit(obs)


def _dyspnea_grade(run: PatientRun, when: datetime, grade: int) -> None:
    """CTCAE v5 dyspnoea grade, as an integer or as a CTCAE grade code."""
    obs = _observation(run, "dyspnea", when, result_delay_minutes=5)
    if run.rng.random() < 0.5:
        obs["valueInteger"] = grade
    else:
        answer = _coding(CTCAE_GRADE, str(grade), CTCAE_GRADE_DISPLAY[grade])
        obs["valueCodeableConcept"] = {"coding": [answer]}
    run.out.emit(obs)


# --------------------------------------------------------------------------
# Timeline phases 2 and 6: blinatumomab cycles, one MedicationAdministration per bag.


def _bag_dose(run: PatientRun, days: int) -> Json:
    """Total drug in the bag; demo-east sometimes charts it in mg."""
    micrograms = DOSE_UG_PER_DAY * days
    if run.rng.random() < run.site.dose_in_mg_share:
        return {"value": round(micrograms / 1000, 3), "unit": "mg", "system": UCUM, "code": "mg"}
    return {"value": micrograms, "unit": "ug", "system": UCUM, "code": "ug"}


def _study_drug_bag(
    run: PatientRun,
    start: datetime,
    end: datetime,
    days: int,
    *,
    status: str = "completed",
    text_only: bool = False,
) -> Json:
    """One blinatumomab bag: period hung to removed, total drug in the bag, pump rate."""
    site = run.site
    updated = (end if status == "completed" else start) + timedelta(minutes=run.rng.randint(5, 90))
    bag: Json = {
        "resourceType": "MedicationAdministration",
        "id": run.new_id("mad"),
        "meta": _meta(site, updated),
        "status": status,
    }
    if status == "not-done":
        bag["statusReason"] = [{"text": "bag not hung: infusion pump occlusion, replaced"}]
    bag["medicationCodeableConcept"] = {"text": site.study_drug_text_only} if text_only else site.study_drug
    bag["subject"] = run.subject
    bag["effectivePeriod"] = {"start": _stamp(site, start), "end": _stamp(site, end)}
    bag["dosage"] = {
        "route": INTRAVENOUS,
        "dose": _bag_dose(run, days),
        "rateQuantity": {"value": RATE_ML_PER_H[days], "unit": "mL/h", "system": UCUM, "code": "mL/h"},
    }
    return bag


def blinatumomab_cycle(run: PatientRun, start: datetime, cycle: int) -> datetime:
    """One cycle of 28 infused days as bags of 1-4 days; returns the last bag's end.

    Bag changes leave gaps of minutes to a few hours (interruptions, not
    cycle breaks).  ``cycle`` 0 is the pre-transplant cycle, 1-4 maintenance.
    """
    rng = run.rng
    remaining = INFUSION_DAYS_PER_CYCLE
    bag_start = start
    bag_number = 0
    while remaining:
        days = min(remaining, rng.randint(1, 4))
        bag_end = _elapsed(run.site, bag_start, timedelta(days=days))
        special = cycle == 0 and bag_number == 2
        if special and run.has("not_done_bag"):
            run.out.emit(_study_drug_bag(run, bag_start, bag_end, days, status="not-done"))
        text_only = cycle == 1 and bag_number == 3 and run.has("study_drug_text_only")
        bag = _study_drug_bag(run, bag_start, bag_end, days, text_only=text_only)
        run.out.emit(bag)
        if text_only:
            example = run.site.study_drug_text_only
            run.mess(
                "study_drug_text_only",
                f"MedicationAdministration/{bag['id']}",
                f"blinatumomab bag in maintenance cycle 1 coded only as text {example!r}",
            )
        remaining -= days
        bag_number += 1
        if special and run.has("overlap_bag"):
            # The next bag was charted as hung 40 minutes before this one came down.
            bag_start = bag_end - timedelta(minutes=40)
        else:
            bag_start = bag_end + timedelta(minutes=rng.randint(10, 180))
    return bag_end


# --------------------------------------------------------------------------
# Timeline phases 3 and 4: mobilisation, apheresis, transplant.


def mobilization(run: PatientRun, cycle_end: datetime) -> date:
    """G-CSF daily for five days, apheresis on the last; returns the collection date.

    The collection lands 5-9 days after the pre-transplant cycle, i.e. "about
    one week", the protocol's window.
    """
    rng = run.rng
    collection = cycle_end.date() + timedelta(days=rng.randint(5, 9))
    for offset in range(4, -1, -1):
        given = _at(collection - timedelta(days=offset), 8, rng.randrange(60))
        run.out.emit(
            {
                "resourceType": "MedicationAdministration",
                "id": run.new_id("mad"),
                "meta": _meta(run.site, given + timedelta(minutes=rng.randint(5, 60))),
                "status": "completed",
                "medicationCodeableConcept": run.site.gcsf,
                "subject": run.subject,
                "effectiveDateTime": _stamp(run.site, given),
                "dosage": {
                    "route": SUBCUTANEOUS,
                    "dose": {"value": rng.choice((480, 600)), "unit": "ug", "system": UCUM, "code": "ug"},
                },
            }
        )
    start = _at(collection, rng.randint(9, 10), rng.randrange(60))
    end = start + timedelta(minutes=rng.randint(210, 300))
    run.out.emit(
        {
            "resourceType": "Procedure",
            "id": run.new_id("prc"),
            "meta": _meta(run.site, end + timedelta(hours=1)),
            "status": "completed",
            "code": run.site.procedures["apheresis"],
            "subject": run.subject,
            "performedPeriod": {"start": _stamp(run.site, start), "end": _stamp(run.site, end)},
        }
    )
    return collection


def transplant(run: PatientRun, collection: date) -> date:
    """The autologous HSCT 10-20 days after collection; its date is day 0."""
    day0 = collection + timedelta(days=run.rng.randint(10, 20))
    infused = _at(day0, run.rng.randint(10, 14), run.rng.randrange(60))
    run.out.emit(
        {
            "resourceType": "Procedure",
            "id": run.new_id("prc"),
            "meta": _meta(run.site, infused + timedelta(hours=4)),
            "status": "completed",
            "code": run.site.procedures["hsct"],
            "subject": run.subject,
            "performedDateTime": _stamp(run.site, infused),
        }
    )
    return day0


# --------------------------------------------------------------------------
# Timeline phase 5: daily blood counts from day -5 to day +30.


@dataclass(frozen=True)
class CountCurve:
    """Aplasia and recovery of one cell line, in 10^9/L.

    Log-linear pieces: ``base`` at day -5, ``nadir`` on ``nadir_day``, just
    under ``threshold`` the day before ``recovery_day``, ``plateau`` at day 30.
    Values after day 0 stay below the threshold until ``recovery_day`` and at
    or above it from then on, so the expected reconstitution day is exact.
    """

    base: float
    nadir: float
    nadir_day: int
    recovery_day: int
    threshold: float
    plateau: float

    def value(self, day: int, noise: float) -> float:
        if day <= self.nadir_day:
            raw = _log_interpolate(day, -5, self.base, self.nadir_day, self.nadir)
        elif day < self.recovery_day:
            last_low_day = self.recovery_day - 1
            raw = _log_interpolate(day, self.nadir_day, self.nadir, last_low_day, self.threshold * 0.9)
        else:
            raw = _log_interpolate(day, self.recovery_day, self.threshold * 1.08, 30, self.plateau)
        raw *= noise
        if 1 <= day < self.recovery_day:
            return min(raw, self.threshold * 0.95)
        if day >= self.recovery_day:
            return max(raw, self.threshold * 1.03)
        return raw


def _log_interpolate(day: int, day_a: int, value_a: float, day_b: int, value_b: float) -> float:
    if day_b == day_a:
        return value_b
    share = (day - day_a) / (day_b - day_a)
    return float(value_a * (value_b / value_a) ** share)


def _recovery_days(run: PatientRun) -> tuple[int, int]:
    """(WBC day, PLT day): both met first on day 12-20; one patient gets WBC days earlier."""
    rng = run.rng
    both = rng.randint(12, 20)
    if run.has("wbc_first") or run.has("implausible_platelet"):
        both = max(both, 17)
        return both - rng.randint(5, 7), both
    lag = rng.randint(0, 2)
    return (both, both - lag) if rng.random() < 0.5 else (both - lag, both)


def blood_counts(run: PatientRun, day0: date) -> int:
    """Daily WBC and PLT around the transplant; returns the reconstitution day."""
    rng = run.rng
    wbc_day, plt_day = _recovery_days(run)
    wbc = CountCurve(
        rng.uniform(4.5, 7.5), rng.uniform(0.05, 0.3), rng.randint(5, 7), wbc_day, 3.0, rng.uniform(4.0, 7.0)
    )
    plt = CountCurve(
        rng.uniform(150, 280), rng.uniform(8, 20), rng.randint(7, 10), plt_day, 50.0, rng.uniform(90, 180)
    )
    for day in range(-5, 31):
        drawn = _morning(rng, day0 + timedelta(days=day))
        wbc_obs = _measurement(run, "wbc", drawn, wbc.value(day, rng.uniform(0.96, 1.04)))
        run.out.emit(wbc_obs)
        if day == 3 and run.has("duplicate"):
            _plant_duplicate(run, wbc_obs)
        if day == 9 and run.has("missing_value"):
            _clotted_platelet_sample(run, drawn - timedelta(minutes=70))
        platelets = plt.value(day, rng.uniform(0.96, 1.04))
        if run.has("implausible_platelet") and day == wbc_day + 1:
            _implausible_platelet(run, drawn, platelets)
        else:
            run.out.emit(_measurement(run, "plt", drawn, platelets))
    return max(wbc_day, plt_day)


def _plant_duplicate(run: PatientRun, obs: Json) -> None:
    """The same line (id and versionId) sent twice, as overlapping exports do."""
    run.replay.append(obs)
    run.mess(
        "duplicate",
        f"Observation/{obs['id']}",
        "identical line appears twice in Observation.ndjson; dedupe silently, no issue",
    )


def _clotted_platelet_sample(run: PatientRun, drawn: datetime) -> None:
    """A platelet result with dataAbsentReason instead of a value; redrawn later."""
    obs = _observation(run, "plt", drawn)
    obs["dataAbsentReason"] = {
        "coding": [_coding(DATA_ABSENT_REASON, "error", "Error")],
        "text": "specimen clotted",
    }
    run.out.emit(obs)
    run.mess(
        "missing_value",
        f"Observation/{obs['id']}",
        "platelet count with dataAbsentReason 'error' (clotted) and no value; redrawn the same morning",
    )


def _implausible_platelet(run: PatientRun, drawn: datetime, real_value: float) -> None:
    """A mis-keyed 9999 platelet count on a day WBC has recovered but PLT has not.

    Accepting it would move the reconstitution date earlier.
    """
    obs = _measurement(run, "plt", drawn, 9999)
    run.out.emit(obs)
    run.mess(
        "implausible_value",
        f"Observation/{obs['id']}",
        f"platelet count 9999 10^9/L (real value about {real_value:.0f}); "
        "accepting it would date reconstitution too early",
    )


# --------------------------------------------------------------------------
# Timeline phase 6 and 7: maintenance and MRD.


def maintenance(run: PatientRun, recovered: date) -> None:
    """Four maintenance cycles: 28 infused days, then 14 days off."""
    rng = run.rng
    start_day = recovered + timedelta(days=rng.randint(14, 28))
    start = _at(start_day, rng.randint(9, 14), rng.randrange(60))
    for cycle in range(1, MAINTENANCE_CYCLES + 1):
        end = blinatumomab_cycle(run, start, cycle)
        next_day = end.date() + timedelta(days=DAYS_OFF_BETWEEN_CYCLES + rng.randint(0, 2))
        start = _at(next_day, rng.randint(9, 14), rng.randrange(60))


def mrd_follow_up(run: PatientRun, day0: date) -> None:
    """Flow and IgH-NGS MRD on bone marrow around days 30, 90 and 150."""
    rng = run.rng
    for visit, target in enumerate((30, 90, 150)):
        drawn = _at(day0 + timedelta(days=target + rng.randint(-4, 4)), rng.randint(8, 11), rng.randrange(60))
        preliminary = visit == 2 and run.has("preliminary")
        flow = _mrd_result(
            run,
            "mrd_flow",
            drawn,
            positive=rng.random() < 0.1,
            limit=0.01,
            status="preliminary" if preliminary else "final",
        )
        run.out.emit(flow)
        if preliminary:
            run.mess(
                "not_final",
                f"Observation/{flow['id']}",
                "MRD flow result still preliminary (final report pending)",
            )
        ngs_drawn = drawn + timedelta(minutes=5)
        run.out.emit(_mrd_result(run, "mrd_ngs", ngs_drawn, positive=rng.random() < 0.1, limit=0.0001))


def _mrd_result(
    run: PatientRun, concept: str, drawn: datetime, *, positive: bool, limit: float, status: str = "final"
) -> Json:
    """A fraction in %, often as "< limit of detection" with a comparator.

    Measured negatives are only reported by flow (e.g. 0.005 %); IgH-NGS
    negatives are always "< 0.0001 %" (1 in 10^6 cells), which also keeps
    numbers out of exponent notation in the JSON.
    """
    rng = run.rng
    obs = _observation(run, concept, drawn, status=status, result_delay_minutes=rng.randint(2, 6) * 1440)
    lab = run.site.labs[concept]
    if positive:
        obs["valueQuantity"] = _quantity(lab, _number(limit * rng.uniform(1.5, 8), lab.decimals))
    elif concept == "mrd_flow" and rng.random() < 0.5:
        obs["valueQuantity"] = _quantity(lab, _number(limit * rng.uniform(0.1, 0.8), lab.decimals + 1))
    else:
        quantity = _quantity(lab, limit)
        obs["valueQuantity"] = {"value": quantity.pop("value"), "comparator": "<", **quantity}
    return obs


# --------------------------------------------------------------------------
# Whole patients and sites.


def roster_patient(run: PatientRun) -> None:
    """Write one roster patient's whole protocol timeline, phase by phase."""
    rng = run.rng
    screening(run)
    first_bag = _at(run.enrolment + timedelta(days=rng.randint(3, 10)), rng.randint(9, 14), rng.randrange(60))
    cycle_end = blinatumomab_cycle(run, first_bag, 0)
    collection = mobilization(run, cycle_end)
    day0 = transplant(run, collection)
    recovery_day = blood_counts(run, day0)
    mrd_follow_up(run, day0)
    maintenance(run, day0 + timedelta(days=recovery_day))
    for resource in run.replay:
        run.out.emit(resource)


def stray_patient(run: PatientRun) -> None:
    """A patient the site sends who is not on the trial roster (e.g. a compassionate-use case)."""
    rng = run.rng
    drawn = _morning(rng, run.enrolment)
    run.out.emit(_measurement(run, "creatinine", drawn, rng.uniform(0.6, 1.1)))
    run.out.emit(_measurement(run, "wbc", drawn, rng.uniform(4, 8)))
    run.out.emit(_measurement(run, "plt", drawn, rng.uniform(160, 260)))
    start = _at(run.enrolment + timedelta(days=2), 11, rng.randrange(60))
    run.out.emit(_study_drug_bag(run, start, _elapsed(run.site, start, timedelta(days=2)), 2))
    run.mess(
        "patient_not_on_roster",
        f"Patient/{run.patient_id}",
        "patient not in roster.csv, with 3 Observations and 1 blinatumomab MedicationAdministration",
    )


def generate_site(
    site: SiteProfile, folder: Path, patients: int, rng: random.Random, messes: list[Mess]
) -> SiteOutput:
    """Write one site's folder: roster patients, one stray patient, roster.csv.

    Each patient draws from its own ``Random`` seeded from the site's stream,
    so a planted mess never reshuffles the other patients' data.
    """
    ids = IdPool()
    mrns: set[str] = set()
    enrolments = _enrolment_dates(rng, patients)
    roles = _assign_roles(site, rng, patients)
    width = max(3, len(str(patients)))
    roster_path = folder / "roster.csv"
    with SiteFiles(folder) as out, roster_path.open("w", encoding="utf-8", newline="") as roster_file:
        roster = csv.writer(roster_file, lineterminator="\n")
        roster.writerow(ROSTER_COLUMNS)
        for index in range(patients):
            enrolment = enrolments[index]
            person_rng = random.Random(rng.getrandbits(64))  # noqa: S311 - synthetic data, not security
            who = _identity(site, person_rng, ids, mrns, enrolment)
            subject_id = f"{STUDY}-{site.letter}-{index + 1:0{width}d}"
            roster.writerow((site.mrn_system, who.mrn, subject_id, enrolment.isoformat()))
            out.emit(_patient_resource(site, who, _at(enrolment - timedelta(days=40), 9)))
            roster_patient(
                PatientRun(site, person_rng, ids, out, messes, who.patient_id, roles[index], enrolment)
            )
        stray_rng = random.Random(rng.getrandbits(64))  # noqa: S311
        stray_day = BASE_ENROLMENT + timedelta(days=stray_rng.randrange(ENROLMENT_SPAN_DAYS))
        stray = _identity(site, stray_rng, ids, mrns, stray_day)
        out.emit(_patient_resource(site, stray, _at(stray_day - timedelta(days=3), 10)))
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
