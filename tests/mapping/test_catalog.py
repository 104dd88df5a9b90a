"""The catalog loads, merges site overrides, and refuses what would mis-map."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapter import errors, paths
from adapter.mapping import catalog

LOINC = "http://loinc.org"


@pytest.fixture
def mapping_dir(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(paths.default_mappings_dir(), target)
    return target


def test_central_catalog_has_every_protocol_concept() -> None:
    cat = catalog.load_catalog(paths.default_mappings_dir())
    assert set(cat.concepts) >= {
        "lvef", "creatinine", "alt", "ast", "bilirubin_total", "spo2", "oxygen_flow", "fio2", "ecog",
        "dyspnea_grade", "wbc", "platelets", "mrd_flow", "mrd_ngs", "blinatumomab", "mobilization",
        "apheresis", "auto_hsct", "echocardiogram",
    }  # fmt: skip
    concept = cat.concept_for(LOINC, "2160-0")
    assert concept is not None and concept.id == "creatinine"
    assert cat.concept_for("urn:oid:2.16.840.1.113883.6.1", "1742-6").id == "alt"  # type: ignore[union-attr]
    assert cat.concept_for(LOINC, "20564-1") is None  # blood-gas SaO2 is not pulse oximetry


def test_site_override_adds_local_codes_and_changes_the_version() -> None:
    central = catalog.load_catalog(paths.default_mappings_dir())
    east = catalog.load_catalog(paths.default_mappings_dir(), "demo-east")
    assert central.concept_for("http://hospital-east.example/fhir/lis", "0045") is None
    assert east.concept_for("http://hospital-east.example/fhir/lis", "0045").id == "creatinine"  # type: ignore[union-attr]
    assert central.version != east.version
    assert catalog.load_catalog(paths.default_mappings_dir(), "no-such-site").version == central.version


def test_conflicting_override_is_a_load_error(mapping_dir: Path) -> None:
    (mapping_dir / "sites" / "x.toml").write_text('[codes]\n"http://loinc.org|2160-0" = "alt"\n')
    with pytest.raises(errors.MappingError, match=r"conflicts with concepts\.toml.*'creatinine'"):
        catalog.load_catalog(mapping_dir, "x")


def test_override_naming_unknown_concept_lists_known_ones(mapping_dir: Path) -> None:
    (mapping_dir / "sites" / "x.toml").write_text('[codes]\n"local|1" = "creatinin"\n')
    with pytest.raises(errors.MappingError, match=r"unknown concept 'creatinin'; known: .*creatinine"):
        catalog.load_catalog(mapping_dir, "x")


def test_same_code_for_two_central_concepts_names_the_line(mapping_dir: Path) -> None:
    path = mapping_dir / "concepts.toml"
    text = path.read_text().replace('codes = ["loinc|1920-8"', 'codes = ["loinc|1742-6", "loinc|1920-8"')
    path.write_text(text)
    with pytest.raises(errors.MappingError, match=r"concepts.toml line \d+ \(concept 'ast'\).*already means"):
        catalog.load_catalog(mapping_dir)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('plausible = [0.05, 30]', 'plausible = [30, 0.05]', "low <= high"),
        ('kind = "lab"', 'kind = "labb"', "kind"),
        ('unit = "mg/dL"\naccepted_units = ["mg/dL", "mg/L", "umol/L", "mmol/L"]',
         'unit = "mg/dL"\naccepted_units = ["mg/dL", "bananas"]', "not a known UCUM unit"),
        ('"loinc|2160-0"', '"2160-0"', 'must be written "system|code"'),
        ('"loinc|2160-0"', '"LOINC|2160-0"', "neither a name from [systems]"),
        ("[catalog]", "[catalogue]", "catalog"),
    ],
)  # fmt: skip
def test_bad_catalog_names_file_and_reason(mapping_dir: Path, old: str, new: str, message: str) -> None:
    path = mapping_dir / "concepts.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(errors.MappingError) as caught:
        catalog.load_catalog(mapping_dir)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_ignored_code_cannot_also_be_mapped(mapping_dir: Path) -> None:
    (mapping_dir / "sites" / "x.toml").write_text('[ignored_codes]\n"http://loinc.org|2160-0" = "no"\n')
    with pytest.raises(errors.MappingError, match="both mapped and ignored"):
        catalog.load_catalog(mapping_dir, "x")


@pytest.mark.parametrize(
    "system",
    [
        "http://loinc.org",
        "https://loinc.org",
        "http://loinc.org/",
        "HTTP://LOINC.ORG",
        " http://loinc.org ",
        "urn:oid:2.16.840.1.113883.6.1",
    ],
)
def test_spellings_of_a_code_system_url_find_the_same_concept(system: str) -> None:
    cat = catalog.load_catalog(paths.default_mappings_dir())
    concept = cat.concept_for(system, "2160-0")
    assert concept is not None and concept.id == "creatinine"


@pytest.mark.parametrize(
    ("system", "known"),
    [
        ("http://loinc.org/extra", False),  # another path is another system
        ("urn:oid:2.16.840.1.113883.6.1.9", False),
        ("loinc.org", False),  # not a URL: kept as written
    ],
)
def test_other_systems_are_not_folded_into_a_known_one(system: str, known: bool) -> None:
    cat = catalog.load_catalog(paths.default_mappings_dir())
    assert (cat.concept_for(system, "2160-0") is not None) is known


def test_a_site_override_written_with_https_matches_codes_sent_with_http(mapping_dir: Path) -> None:
    site = mapping_dir / "sites" / "demo-north.toml"
    text = site.read_text().replace("[codes]\n", '[codes]\n"https://Lab.Example/codes|K-7" = "creatinine"\n')
    site.write_text(text)
    cat = catalog.load_catalog(mapping_dir, "demo-north")
    concept = cat.concept_for("http://lab.example/codes", "K-7")
    assert concept is not None and concept.id == "creatinine"


def test_the_site_fix_file_is_read_last_and_wins_over_the_mapping_folder(
    mapping_dir: Path, tmp_path: Path
) -> None:
    shipped = catalog.load_catalog(mapping_dir, "demo-east")
    fixes_dir = tmp_path / "fixes"
    assert catalog.load_catalog(mapping_dir, "demo-east", fixes_dir).version == shipped.version
    fixes_dir.mkdir()
    (fixes_dir / "demo-east.toml").write_text(
        '[codes]\n"http://hospital-east.example/fhir/lis|0101" = "platelets"\n'
        '"urn:local|9" = "alt"\n'
        '[ignored_codes]\n"http://hospital-east.example/fhir/lis|0102" = "counted elsewhere"\n'
        '[units]\n"umol/l" = "umol/L"\n'
    )
    fixed = catalog.load_catalog(mapping_dir, "demo-east", fixes_dir)
    assert fixed.version != shipped.version
    assert fixed.concept_for("http://hospital-east.example/fhir/lis", "0101").id == "platelets"  # type: ignore[union-attr]
    assert fixed.concept_for("urn:local", "9").id == "alt"  # type: ignore[union-attr]
    assert fixed.concept_for("http://hospital-east.example/fhir/lis", "0102") is None
    assert ("http://hospital-east.example/fhir/lis", "0102") in fixed.ignored_codes
    assert fixed.code_sources[("urn:local", "9")] == "override"
    assert fixed.unit_spellings["umol/l"] == "umol/L"


def test_a_site_fix_file_cannot_contradict_concepts_toml_or_itself(mapping_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "x.toml").write_text('[codes]\n"http://loinc.org|2160-0" = "alt"\n')
    with pytest.raises(errors.MappingError, match=r"x\.toml.*conflicts with concepts\.toml"):
        catalog.load_catalog(mapping_dir, "x", tmp_path)
    both = '[codes]\n"urn:local|1" = "alt"\n[ignored_codes]\n"urn:local|1" = "no"\n'
    (tmp_path / "x.toml").write_text(both)
    with pytest.raises(errors.MappingError, match="both mapped and ignored"):
        catalog.load_catalog(mapping_dir, "x", tmp_path)
