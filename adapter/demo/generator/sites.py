"""The two demo hospitals, ``demo-north`` (US) and ``demo-east`` (China).

Each profile is one hospital's coding of the protocol's concepts, its units,
its clock and the planted-mess roles its patients get.
"""

from __future__ import annotations

from adapter.demo.generator.clocks import china_offset, us_central_offset
from adapter.demo.generator.profile import LabCode, SiteProfile
from adapter.demo.generator.vocabulary import (
    ALT_LOINC_DISPLAY,
    AST_LOINC_DISPLAY,
    ATC,
    BILIRUBIN_MASS_DISPLAY,
    CPT,
    CREATININE_MASS_DISPLAY,
    EAST_LIS,
    EAST_PROCEDURE,
    ECOG_DISPLAY,
    ICD9CM,
    LOINC,
    LVEF_DISPLAY,
    MEDDRA,
    NORTH_LAB,
    O2_FLOW_DISPLAY,
    PLT_DISPLAY,
    RXNORM,
    SNOMED,
    SPO2_DISPLAY,
    WBC_DISPLAY,
    Json,
    codeable_concept,
    coding,
)


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
    codings = (coding(system, code, display),) + ((also,) if also else ())
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
            also=coding(LOINC, "2708-6", "Oxygen saturation in Arterial blood"),
        ),
        "o2_flow": _standard_lab(
            "3151-8", O2_FLOW_DISPLAY, "O2 flow", "L/min", decimals=0, category="vital-signs"
        ),
        "ecog": _standard_lab("89247-1", ECOG_DISPLAY, "ECOG", None, decimals=0, category="survey"),
        "dyspnea": LabCode((coding(MEDDRA, "10013968", "Dyspnoea"),), "Dyspnea (CTCAE v5 grade)", "survey"),
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
    study_drug=codeable_concept(RXNORM, "1597262", "blinatumomab 0.035 MG Injection", "Blincyto"),
    study_drug_text_only="Blincyto infusion",
    gcsf=codeable_concept(RXNORM, "68442", "filgrastim", "Neupogen"),
    procedures={
        "hsct": codeable_concept(
            SNOMED, "709115004", "Transplantation of autologous hematopoietic stem cell (procedure)"
        ),
        "apheresis": codeable_concept(
            CPT,
            "38206",
            "Blood-derived hematopoietic progenitor cell harvesting for "
            "transplantation, per collection; autologous",
        ),
        "echo": codeable_concept(
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
        (coding(EAST_LIS, code, display),),
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
            loinc=coding(LOINC, "10230-1", LVEF_DISPLAY),
        ),
        "creatinine": _east_lab(
            "0045",
            "肌酐",
            "\u03bcmol/L",
            "umol/L",
            decimals=0,
            factor=88.4,
            loinc=coding(LOINC, "14682-9", "Creatinine [Moles/volume] in Serum or Plasma"),
        ),
        "alt": _east_lab(
            "0032",
            "丙氨酸氨基转移酶",
            "IU/L",
            None,
            decimals=0,
            loinc=coding(LOINC, "1742-6", ALT_LOINC_DISPLAY),
        ),
        "ast": _east_lab(
            "0033",
            "天门冬氨酸氨基转移酶",
            "U/L",
            "U/L",
            decimals=0,
            loinc=coding(LOINC, "1920-8", AST_LOINC_DISPLAY),
        ),
        "bilirubin": _east_lab(
            "0038",
            "总胆红素",
            "\u03bcmol/L",
            "umol/L",
            decimals=1,
            factor=17.1,
            loinc=coding(LOINC, "14631-6", "Bilirubin.total [Moles/volume] in Serum or Plasma"),
        ),
        "spo2": _east_lab(
            "SPO2",
            "血氧饱和度",
            "%",
            "%",
            decimals=0,
            category="vital-signs",
            loinc=coding(LOINC, "59408-5", SPO2_DISPLAY),
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
            loinc=coding(LOINC, "89247-1", ECOG_DISPLAY),
        ),
        "dyspnea": LabCode((coding(MEDDRA, "10013968", "Dyspnoea"),), "呼吸困难(CTCAE分级)", "survey"),
        "wbc": _east_lab(
            "0101",
            "白细胞计数",
            "×10^9/L",
            None,
            decimals=2,
            loinc=coding(LOINC, "6690-2", WBC_DISPLAY),
        ),
        "plt": _east_lab(
            "0102",
            "血小板计数",
            "10^9/L",
            "10*9/L",
            decimals=0,
            loinc=coding(LOINC, "777-3", PLT_DISPLAY),
        ),
        "mrd_flow": _east_lab("MRD-FCM", "微小残留病(流式细胞术)", "%", "%", decimals=4),
        "mrd_ngs": _east_lab("MRD-NGS", "微小残留病(IgH高通量测序)", "%", "%", decimals=5),
        "sodium": _east_lab("0099", "钠", "mmol/L", "mmol/L", decimals=0),
    },
    uln={"alt": 50, "ast": 40},
    study_drug=codeable_concept(ATC, "L01XC19", "注射用贝林妥欧单抗", "注射用贝林妥欧单抗 35μg"),
    study_drug_text_only="贝林妥欧单抗 35ug",
    gcsf=codeable_concept(ATC, "L03AA02", "重组人粒细胞刺激因子注射液"),
    procedures={
        "hsct": codeable_concept(ICD9CM, "41.04", "自体造血干细胞移植"),
        "apheresis": codeable_concept(EAST_PROCEDURE, "PBSC-COLL", "外周血干细胞采集"),
        "echo": codeable_concept(EAST_PROCEDURE, "UCG", "超声心动图"),
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
