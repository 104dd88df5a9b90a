"""Mapping suggestions: names, units and values as evidence, and the words that rule a concept out."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from adapter import errors, paths
from adapter.mapping import catalog, suggest
from adapter.mapping.suggest import text

CORPUS = Path(__file__).resolve().parents[1] / "data" / "local_lab_names.csv"


@pytest.fixture(scope="module")
def cat() -> catalog.Catalog:
    return catalog.load_catalog(paths.default_mappings_dir())


@pytest.fixture(scope="module")
def synonyms() -> suggest.SynonymTable:
    return suggest.load_synonyms(paths.default_mappings_dir())


def _concepts(found: list[suggest.Suggestion]) -> list[str]:
    return [s.concept for s in found]


# --- normalisation -----------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "full", "content"),
    [
        ("ＡＬＴ（血清）", ("alt", "血清"), ("alt",)),  # full-width letters and brackets
        ("\u0391LT", ("alt",), ("alt",)),  # a Greek capital alpha for the Latin A
        ("\u0421RP", ("crp",), ("crp",)),  # a Cyrillic Es for the Latin C
        ("γ-GT", ("gamma", "gt"), ("gamma", "gt")),  # a Greek letter spelt out
        ("Créatinine", ("creatinine",), ("creatinine",)),  # accents
        ("Haemoglobin", ("hemoglobin",), ("hemoglobin",)),  # British spelling
        ("Leucocytes", ("leukocyte",), ("leukocyte",)),  # spelling and plural
        ("T-BIL", ("t", "bil"), ("t", "bil")),
        (
            "Bilirubin.total [Mass/volume] in Serum or Plasma",
            ("bilirubin", "total", "mass", "volume", "in", "serum", "or", "plasma"),
            ("bilirubin", "total"),
        ),
        ("血清肌酐", ("血清肌酐",), ("肌酐",)),  # a specimen glued to a Chinese name
        ("白细胞计数", ("白细胞计数",), ("白细胞",)),
        ("Cr(酶法)", ("cr", "酶法"), ("cr",)),  # a method word
        ("ALT丙氨酸", ("alt", "丙氨酸"), ("alt", "丙氨酸")),  # Latin and CJK split
        ("NEUT%", ("neut", "%"), ("neut", "%")),  # a percentage stays visible
        ("PLT 10^9/L", ("plt", "10", "9", "l"), ("plt", "l")),  # numbers are no name
        ("Лейкоциты", ("лейкоциты",), ("лейкоциты",)),  # a Cyrillic word stays Cyrillic
        ("O2 Sat", ("oxygen", "sat"), ("oxygen", "sat")),  # O2 is oxygen
        ("ALT SerPl-cCnc", ("alt", "serpl", "ccnc"), ("alt",)),  # LOINC short-name abbreviations
        ("Platelets [#/volume]", ("platelet", "#", "volume"), ("platelet",)),  # a count is no volume
    ],
)
def test_names_are_read_into_one_spelling(
    written: str, full: tuple[str, ...], content: tuple[str, ...]
) -> None:
    read = text.read(written)
    assert read.full == full
    assert read.content == content


# --- names, and the words that rule a concept out ------------------------------


@pytest.mark.parametrize(
    ("display", "unit", "expected"),
    [
        ("丙氨酸氨基转移酶", "U/L", "alt"),
        ("GPT", None, "alt"),
        ("SGPT", "IU/L", "alt"),
        ("ALT (serum)", None, "alt"),
        ("天门冬氨酸氨基转移酶", "U/L", "ast"),
        ("Cr(酶法)", "μmol/L", "creatinine"),
        ("TBIL 总胆红素", "µmol/L", "bilirubin_total"),
        ("Bilirubin, total", "mg/dL", "bilirubin_total"),
        ("WBC#", "10^9/L", "wbc"),
        ("血小板计数", "×10⁹/L", "platelets"),
        ("经皮血氧饱和度", "%", "spo2"),
        ("MRD by flow cytometry", "%", "mrd_flow"),
        ("MRD NGS", "%", "mrd_ngs"),
    ],
)
def test_a_known_name_is_the_first_suggestion(
    cat: catalog.Catalog, synonyms: suggest.SynonymTable, display: str, unit: str | None, expected: str
) -> None:
    found = suggest.suggest(cat, synonyms, display=display, unit=unit)
    assert found and found[0].concept == expected
    assert 0 < found[0].score <= 1


@pytest.mark.parametrize(
    "display",
    [
        "直接胆红素",  # direct bilirubin
        "DBIL",
        "Indirect bilirubin",
        "Creatine kinase",
        "肌酐清除率",  # creatinine clearance
        "Creatinine [Mass/volume] in Urine",
        "平均血小板体积",  # MPV
        "Platelet mean volume [Entitic volume] in Blood by Automated count",
        "尿白细胞",  # urine WBC
        "Neutrophils/100 leukocytes in Blood by Automated count",
        "白细胞介素-6",  # interleukin 6
        "AST/ALT ratio",
        "Karnofsky performance status",
        "allo-HSCT",
        "Bilirubin Dir Ser",  # LOINC short-name abbreviations of the other fractions and specimens
        "Creatinine R-Ur",
        "O2 Sat BldV",
        "Echo Type 1 Ab Titr NT",  # echovirus serology, not an echocardiogram
        "Nuc RBCs/100 WBCs",
    ],
)
def test_an_excluding_word_rules_the_concept_out(
    cat: catalog.Catalog, synonyms: suggest.SynonymTable, display: str
) -> None:
    assert suggest.suggest(cat, synonyms, display=display) == []


def test_the_same_name_without_the_excluding_word_is_suggested(
    cat: catalog.Catalog, synonyms: suggest.SynonymTable
) -> None:
    assert _concepts(suggest.suggest(cat, synonyms, display="总胆红素")) == ["bilirubin_total"]
    assert _concepts(suggest.suggest(cat, synonyms, display="肌酐")) == ["creatinine"]
    assert _concepts(suggest.suggest(cat, synonyms, display="白细胞")) == ["wbc"]


def test_an_abbreviation_lost_in_a_long_name_is_no_evidence(
    cat: catalog.Catalog, synonyms: suggest.SynonymTable
) -> None:
    """Short abbreviations are also words: "got" in a survey question is not GOT (AST)."""
    question = "During the 3 months before you got pregnant, how many alcoholic drinks did you have"
    assert suggest.suggest(cat, synonyms, display=question) == []
    assert _concepts(suggest.suggest(cat, synonyms, display="GOT")) == ["ast"]
    assert _concepts(suggest.suggest(cat, synonyms, display="WBC # Pleural Fld")) == ["wbc"]


def test_name_evidence_is_required(cat: catalog.Catalog, synonyms: suggest.SynonymTable) -> None:
    """A unit and values fit many analytes; on their own they suggest nothing."""
    assert suggest.suggest(cat, synonyms, display="Result", unit="U/L", values=[30, 42]) == []
    assert suggest.suggest(cat, synonyms, display="", unit="%", values=[98]) == []


def test_a_caution_word_keeps_the_concept_flagged_and_lower(
    cat: catalog.Catalog, synonyms: suggest.SynonymTable
) -> None:
    plain = suggest.suggest(cat, synonyms, display="SaO2", unit="%")[0]
    blood_gas = suggest.suggest(cat, synonyms, display="SaO2 (blood gas)", unit="%")[0]
    assert plain.concept == blood_gas.concept == "spo2"
    assert blood_gas.score < plain.score
    assert any("'blood gas'" in e and "check before mapping" in e for e in blood_gas.evidence)


def test_coverage_ranks_two_concepts_that_share_a_name(
    cat: catalog.Catalog, synonyms: suggest.SynonymTable
) -> None:
    both = suggest.suggest(cat, synonyms, display="MRD")
    assert sorted(_concepts(both)) == ["mrd_flow", "mrd_ngs"]
    assert len(suggest.suggest(cat, synonyms, display="MRD", top=1)) == 1
    assert suggest.suggest(cat, synonyms, display="MRD", top=0) == []


# --- unit and values -------------------------------------------------------------


def test_a_unit_of_another_dimension_rules_the_concept_out(
    cat: catalog.Catalog, synonyms: suggest.SynonymTable
) -> None:
    assert suggest.suggest(cat, synonyms, display="ALT", unit="mmol/L") == []  # not an activity
    assert suggest.suggest(cat, synonyms, display="WBC", unit="%") == []  # a differential
    assert suggest.suggest(cat, synonyms, display="Creatinine", unit="U/L") == []
    # µmol/L is creatinine through its molar mass: it fits
    assert _concepts(suggest.suggest(cat, synonyms, display="Creatinine", unit="µmol/L")) == ["creatinine"]


def test_a_fitting_unit_raises_the_score_and_says_so(
    cat: catalog.Catalog, synonyms: suggest.SynonymTable
) -> None:
    bare = suggest.suggest(cat, synonyms, display="GPT")[0]
    with_unit = suggest.suggest(cat, synonyms, display="GPT", unit="U/L")[0]
    converted = suggest.suggest(cat, synonyms, display="肌酐", unit="μmol/L")[0]
    assert with_unit.score > bare.score
    assert with_unit.evidence == (
        "name 'GPT' is a known abbreviation of ALT",
        "unit U/L fits ALT's canonical unit U/L",
    )
    assert converted.evidence[1] == "unit μmol/L converts to creatinine's canonical unit mg/dL"


def test_an_unreadable_unit_is_no_evidence(cat: catalog.Catalog, synonyms: suggest.SynonymTable) -> None:
    found = suggest.suggest(cat, synonyms, display="ALT", unit="units per wombat", values=[30])
    assert _concepts(found) == ["alt"]
    assert found[0].evidence[1] == "the unit is not one the adapter reads, so it is no evidence"
    assert not any("values" in e for e in found[0].evidence)  # values in an unknown unit say nothing


def test_values_inside_the_plausible_range_are_evidence(
    cat: catalog.Catalog, synonyms: suggest.SynonymTable
) -> None:
    inside = suggest.suggest(cat, synonyms, display="GPT", unit="U/L", values=[12.0] * 12)[0]
    outside = suggest.suggest(cat, synonyms, display="GPT", unit="U/L", values=[50000.0, 90000.0])[0]
    nothing = suggest.suggest(cat, synonyms, display="GPT", unit="U/L")[0]
    assert inside.evidence[-1] == "12 of 12 values fall inside ALT's plausible range 1–20000 U/L"
    assert outside.evidence[-1] == "only 0 of 2 values fall inside ALT's plausible range 1–20000 U/L"
    assert outside.score < nothing.score <= inside.score


def test_values_are_compared_in_the_canonical_unit(
    cat: catalog.Catalog, synonyms: suggest.SynonymTable
) -> None:
    """88.4 µmol/L is 1 mg/dL: inside creatinine's 0.05–30 mg/dL, though 88.4 mg/dL would not be."""
    found = suggest.suggest(cat, synonyms, display="CREA", unit="µmol/L", values=[88.4, 1000.0])[0]
    assert found.evidence[-1] == "2 of 2 values fall inside creatinine's plausible range 0.05–30 mg/dL"
    unitless = suggest.suggest(cat, synonyms, display="CREA", values=[88.4])[0]
    assert unitless.evidence[-1] == (
        "only 0 of 1 values fall inside creatinine's plausible range 0.05–30 mg/dL, "
        "taking them as mg/dL (no unit was sent)"
    )


# --- looks_like_protocol (the triage of unknown standard codes) ---------------------


@pytest.mark.parametrize(
    "display",
    [
        "Sodium [Moles/volume] in Serum or Plasma",
        "Potassium [Moles/volume] in Serum or Plasma",
        "Hemoglobin A1c/Hemoglobin.total in Blood",
        "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay",
        "Heart rate",
        "Heart rate by Pulse oximetry",
        "Body mass index (BMI) [Ratio]",
        "Hemoglobin [Mass/volume] in Blood",
        "Neutrophils [#/volume] in Blood by Automated count",
        "Bilirubin.direct [Mass/volume] in Serum or Plasma",
        "Bilirubin.indirect [Mass/volume] in Serum or Plasma",
        "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma",
        "Gamma glutamyl transferase [Enzymatic activity/volume] in Serum or Plasma",
        "Albumin [Mass/volume] in Serum or Plasma",
        "Urea nitrogen [Mass/volume] in Serum or Plasma",
        "Glucose [Mass/volume] in Serum or Plasma",
        "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma",
        "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood "
        "by Creatinine-based formula (CKD-EPI 2021)",
        "Creatinine renal clearance in 24 hour Urine and Serum or Plasma",
        "Platelet mean volume [Entitic volume] in Blood by Automated count",
        "Leukocytes [#/volume] in Urine sediment by Microscopy high power field",
        "Oxygen [Partial pressure] in Arterial blood",
        "Oxygen saturation in Venous blood",
        "Hemogram and platelets WO differential panel - Blood",
        "Ventricular Cardiac output by 2D echo",
        "Body temperature",
        "Respiratory rate",
    ],
)
def test_ordinary_labs_and_vitals_do_not_look_like_the_protocol(
    cat: catalog.Catalog, synonyms: suggest.SynonymTable, display: str
) -> None:
    assert suggest.looks_like_protocol(cat, synonyms, display=display) is None


@pytest.mark.parametrize(
    ("display", "concept"),
    [
        ("Alanine aminotransferase [Enzymatic activity/volume] in Body fluid", "alt"),  # another specimen
        ("Bilirubin.total [Mass/volume] in Body fluid", "bilirubin_total"),
        ("Oxygen saturation in Arterial blood by Pulse oximetry", "spo2"),
        ("Oxygen saturation in Arterial blood by blood gas", "spo2"),  # another method: a person decides
        ("Left ventricular Ejection fraction by MUGA", "lvef"),
        ("Platelets [#/volume] in Blood by Automated count", "platelets"),
        ("Leukocytes [#/volume] in Blood by Manual count", "wbc"),
        ("Creatinine [Moles/volume] in Serum or Plasma", "creatinine"),
    ],
)
def test_the_same_analyte_looks_like_the_protocol(
    cat: catalog.Catalog, synonyms: suggest.SynonymTable, display: str, concept: str
) -> None:
    found = suggest.looks_like_protocol(cat, synonyms, display=display)
    assert found is not None and found.concept == concept


def test_a_name_inside_a_longer_word_is_a_hint_but_not_the_protocol(
    cat: catalog.Catalog, synonyms: suggest.SynonymTable
) -> None:
    found = suggest.suggest(cat, synonyms, display="SerumCreatinine")
    assert _concepts(found) == ["creatinine"]
    assert found[0].evidence[0] == "a word of the name contains 'creatinine', a known name of creatinine"
    assert suggest.looks_like_protocol(cat, synonyms, display="SerumCreatinine") is None


# --- the synonym file --------------------------------------------------------------


def _write_synonyms(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / suggest.SYNONYMS_FILE
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("body", "where", "reason"),
    [
        (
            '[concepts.alt]\nnames = ["serum"]\n',
            "[concepts.alt] names[0] (section at line 1)",
            "no word that can name",
        ),
        ('\n[concepts.alt]\nnmes = ["GPT"]\n', "[concepts.alt] nmes (section at line 2)", "Extra inputs"),
        ('[concepts.alt]\nexclude = ["direct"]\n', "[concepts.alt]", "at least one name"),
        (
            '[concepts.alt]\nnames = ["GPT"]\nexclude = ["gpt"]\n',
            "[concepts.alt]",
            "both a name of the concept and a word that disqualifies it",
        ),
        ('[concepts.Alt]\nnames = ["GPT"]\n', "[concepts.Alt]", "String should match pattern"),
    ],
)
def test_a_bad_synonym_file_names_the_file_the_key_and_the_reason(
    tmp_path: Path, body: str, where: str, reason: str
) -> None:
    path = _write_synonyms(tmp_path / "mapping", body)
    with pytest.raises(errors.MappingError) as caught:
        suggest.load_synonyms(path.parent)
    message = str(caught.value)
    assert str(path) in message
    assert where in message
    assert reason in message


def test_a_synonym_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    path = _write_synonyms(tmp_path / "mapping", "[concepts.alt\nnames = 1\n")
    with pytest.raises(errors.MappingError, match="not valid TOML") as caught:
        suggest.load_synonyms(path.parent)
    assert str(path) in str(caught.value)


def test_a_concept_the_catalog_does_not_have_is_refused_when_used(
    tmp_path: Path, cat: catalog.Catalog
) -> None:
    path = _write_synonyms(tmp_path / "mapping", '[concepts.sodium]\nnames = ["sodium"]\n')
    table = suggest.load_synonyms(path.parent)  # the file alone is valid
    with pytest.raises(errors.MappingError) as caught:
        suggest.suggest(cat, table, display="sodium")
    assert str(path) in str(caught.value)
    assert "[concepts.sodium]" in str(caught.value)


def test_a_mapping_folder_without_the_file_has_an_empty_table(tmp_path: Path, cat: catalog.Catalog) -> None:
    table = suggest.load_synonyms(tmp_path)
    assert table.concepts == {}
    assert suggest.suggest(cat, table, display="ALT", unit="U/L") == []
    assert suggest.looks_like_protocol(cat, suggest.NO_SYNONYMS, display="ALT") is None


def test_tables_are_cached_per_path_until_the_file_changes(tmp_path: Path) -> None:
    path = _write_synonyms(tmp_path / "mapping", '[concepts.alt]\nnames = ["GPT"]\n')
    first = suggest.load_synonyms(path.parent)
    assert suggest.load_synonyms(path.parent) is first
    path.write_text('[concepts.alt]\nnames = ["GPT", "SGPT"]\n', encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = suggest.load_synonyms(path.parent)
    assert second is not first
    assert [t.written for t in second.concepts["alt"].terms] == ["GPT", "SGPT"]


def test_the_bundled_table_names_only_catalog_concepts(
    cat: catalog.Catalog, synonyms: suggest.SynonymTable
) -> None:
    synonyms.check_against(cat)
    assert set(synonyms.concepts) == set(cat.concepts)  # every concept can be suggested


# --- the corpus (a quality floor, see tests/data/local_lab_names.md) ---------------------


def test_the_corpus_of_local_lab_names_meets_the_quality_floor(
    cat: catalog.Catalog, synonyms: suggest.SynonymTable
) -> None:
    with CORPUS.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    protocol = [row for row in rows if row["expected"]]
    others = [row for row in rows if not row["expected"]]
    assert len(rows) >= 120 and len(protocol) >= 80 and len(others) >= 40
    assert set(row["expected"] for row in protocol) <= set(cat.concepts)

    def first(row: dict[str, str]) -> str | None:
        found = suggest.suggest(cat, synonyms, display=row["name"], unit=row["unit"] or None)
        return found[0].concept if found else None

    top1 = [row["name"] for row in protocol if first(row) != row["expected"]]
    noisy = [
        row["name"]
        for row in others
        if suggest.suggest(cat, synonyms, display=row["name"], unit=row["unit"] or None)
    ]
    assert len(top1) <= 0.10 * len(protocol), top1
    assert len(noisy) <= 0.10 * len(others), noisy
