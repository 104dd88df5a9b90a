"""The lean models map exactly like the fhir.resources R4B models.

``adapter/fhir/validation/lean_models.py`` validates only the elements the
engine reads; these tests hold it to the R4B models: on every bundled demo resource, on generated
resources that vary every element the engine reads (good and bad values,
wrong types, missing and conflicting choice elements), and on the one
deliberate difference: an error in an element the adapter never reads does
not stop a resource from being mapped.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import decimal
import shutil
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pydantic
import pytest
import sqlalchemy as sa
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter import config as config_mod
from adapter import paths, roster, sync
from adapter.demo import site as demo_site
from adapter.fhir import ndjson, source
from adapter.fhir.validation import Mode, lean_models
from adapter.mapping import catalog, engine
from adapter.mapping.facts import Fact
from adapter.mapping.issues import IssueKind
from adapter.store import db, models

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ATC = "http://www.whocc.no/atc"
CPT = "http://www.ama-assn.org/go/cpt"
LOCAL = "http://hospital.example/codes"
CAT = dataclasses.replace(
    catalog.load_catalog(paths.default_mappings_dir(), "demo-east"),
    ignored_codes={(LOCAL, "IGNORED"): "not a protocol concept"},
)
CTX = engine.SiteContext(
    site="demo-east", timezone=ZoneInfo("Asia/Shanghai"), catalog=CAT, subjects={"Patient/p1": "S-001"}
)

Outcome = tuple[str, Any]


def outcome(model: Any, raw: dict[str, Any], ctx: engine.SiteContext = CTX) -> Outcome:
    """("invalid", None) or ("mapped", MappingResult) for one model family."""
    try:
        resource = model.model_validate(raw)
    except pydantic.ValidationError:
        return "invalid", None
    return "mapped", engine.map_resource(resource, "v:1", ctx)


def both(raw: dict[str, Any], ctx: engine.SiteContext = CTX) -> tuple[Outcome, Outcome]:
    resource_type = raw["resourceType"]
    return outcome(lean_models.model_for(resource_type), raw, ctx), outcome(
        get_fhir_model_class(resource_type), raw, ctx
    )


# ----------------------------------------------------------------- the bundled demo data


def _demo_resources() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for site_dir in sorted(p for p in paths.demo_data_dir().iterdir() if p.is_dir()):
        for resource_type in sync.MAPPED_TYPES:
            for line in ndjson.read_resources(site_dir, resource_type):
                if isinstance(line, source.SourceLine):
                    found.append((site_dir.name, line.location, line.resource))
    return found


def _demo_contexts() -> dict[str, engine.SiteContext]:
    contexts = {}
    for site_id, timezone in demo_site.SITES.items():
        folder = paths.demo_data_dir() / site_id
        people = roster.load_roster(folder / "roster.csv")
        subjects = {}
        for line in ndjson.read_resources(folder, "Patient"):
            if isinstance(line, source.SourceLine):
                subject = people.subject_for_identifiers(roster.patient_identifiers(line.resource))
                if subject:
                    subjects[f"Patient/{line.resource['id']}"] = subject
        contexts[site_id] = engine.SiteContext(
            site_id, ZoneInfo(timezone), catalog.load_catalog(paths.default_mappings_dir(), site_id), subjects
        )
    return contexts


def test_every_demo_resource_maps_identically() -> None:
    contexts = _demo_contexts()
    resources = _demo_resources()
    assert len(resources) > 1000
    kinds: set[str] = set()
    for site_id, location, raw in resources:
        lean_result, r4b_result = both(raw, contexts[site_id])
        assert lean_result == r4b_result, f"{site_id} {location}"
        assert lean_result[0] == "mapped", f"{site_id} {location}"
        _assert_facts_as_validated(lean_result[1])
        kinds |= {issue.kind.value for issue in lean_result[1].issues}
    # The planted messes are among them, so the comparison covered issue paths too.
    assert {"not_final", "missing_value", "missing_time", "study_drug_text_only", "unknown_unit"} <= kinds


def test_lean_values_have_the_r4b_types() -> None:
    """What the engine reads is the same Python value, not just an equal mapping result."""
    raw = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "2160-0", "display": "Creatinine"}], "text": "Crea"},
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": {"start": "2025-03-01", "end": "2025-03"},
        "valueQuantity": {"value": 1.10, "unit": "mg/dL", "system": UCUM, "code": "mg/dL", "comparator": "<"},
        "referenceRange": [{"high": {"value": 2, "unit": "mg/dL"}}],
    }
    lean_obs = lean_models.Observation.model_validate(raw)
    r4b_obs = get_fhir_model_class("Observation").model_validate(raw)
    for path in (
        "id",
        "status",
        "code.text",
        "subject.reference",
        "effectivePeriod.start",
        "effectivePeriod.end",
        "valueQuantity.value",
        "valueQuantity.comparator",
    ):
        ours, theirs = lean_obs, r4b_obs
        for name in path.split("."):
            ours, theirs = getattr(ours, name), getattr(theirs, name)
        assert ours == theirs and type(ours) is type(theirs), path
    coding = lean_obs.code.coding[0]
    assert (coding.system, coding.code, coding.display) == (LOINC, "2160-0", "Creatinine")
    assert lean_obs.valueQuantity.value == decimal.Decimal("1.1")
    assert lean_obs.referenceRange[0].high.value == decimal.Decimal(2)
    assert isinstance(lean_obs.effectivePeriod.start, dt.date) and lean_obs.effectivePeriod.end == "2025-03"
    assert lean_obs.get_resource_type() == "Observation"


# ----------------------------------------------------------------- generated resources
#
# A generated resource is one of a few realistic templates (each maps to a
# fact) with zero to four of the elements the engine reads replaced by a
# drawn value (a good one of another shape, an odd but valid one, a malformed
# or wrongly typed one) or removed, so facts, every kind of issue and invalid
# resources all occur.

DELETE = object()
BAD = st.sampled_from(["", " ", "two  spaces", " lead", "trail ", 5, 1.5, True, None, [], {}, [None], "x"])
OFFSETS = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=8)), dt.timezone(dt.timedelta(hours=-5))])
DATE_TIMES = st.one_of(
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=OFFSETS).map(
        lambda moment: moment.isoformat().replace("+00:00", "Z")
    ),
    st.dates(min_value=dt.date(1, 1, 1)).map(lambda day: day.isoformat()),
    st.dates(min_value=dt.date(1000, 1, 1)).map(lambda day: day.isoformat()[:7]),
    st.dates(min_value=dt.date(1000, 1, 1)).map(lambda day: day.isoformat()[:4]),
    st.sampled_from(
        [
            "2025-03-01T10:00:00.123456789Z",
            "2025-03-01T10:00:00+14:00",
            "2025-03-01T10:00:00+14:30",
            "2025-03-01T10:00:00-00:00",
            "2025-03-01T10:00:00",  # no offset: invalid FHIR
            "2025-03-01T10:00Z",
            "2025-03-01T24:00:00Z",
            "2025-03-01 10:00:00Z",
            "2016-12-31T23:59:60Z",  # leap second: kept as text by both
            "2016-02-30T23:59:60Z",
            "2025-02-30",
            "2025-13",
            "2025-1-3",
            "0000",
            "2025-03-01\n",
            "20250301",
        ]
    ),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(min_value=-1e10, max_value=1e10, allow_nan=False, allow_infinity=False),
    BAD,
)
DECIMALS = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["1.5", "0.000", "-0", "1e5", "1E-3", "01", "+1", " 1", ".5", "1.", "NaN", "inf", "abc"]),
    BAD,
)
INTEGERS = st.one_of(
    st.integers(min_value=-(2**32), max_value=2**32), st.sampled_from([1.0, 1.5, "3", "x"]), BAD
)
TEXTS = st.one_of(
    st.sampled_from(["Creatinine", "肌酐", "1.2 mg/dL", "<0.01 %", "3", " 2 ", "Blincyto infusion"]), BAD
)
CODES = st.one_of(
    st.sampled_from(
        ["2160-0", "89247-1", "777-3", "59408-5", "3151-8", "0045", "LA9623-5", "IGNORED", "UNKNOWN"]
    ),
    st.sampled_from(["L01XC19", "1597258", "L03AA02", "38241", "38206", "93306"]),
    BAD,
)
SYSTEMS = st.one_of(
    st.sampled_from(
        [
            LOINC,
            UCUM,
            ATC,
            CPT,
            LOCAL,
            "urn:oid:2.16.840.1.113883.6.1",
            "http://hospital-east.example/fhir/lis",
        ]
    ),
    BAD,
)
UNITS = st.one_of(
    st.sampled_from(
        ["mg/dL", "umol/L", "µmol/L", "%", "10*9/L", "K/uL", "/uL", "U/L", "L/min", "ug", "mg", "1", "bogus"]
    ),
    BAD,
)
CODINGS = st.fixed_dictionaries({}, optional={"system": SYSTEMS, "code": CODES, "display": TEXTS})
CODEABLES = st.one_of(
    st.fixed_dictionaries(
        {}, optional={"coding": st.one_of(st.lists(CODINGS, max_size=3), BAD), "text": TEXTS}
    ),
    BAD,
)
QUANTITIES = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "value": DECIMALS,
            "unit": UNITS,
            "system": st.one_of(st.sampled_from([UCUM, "http://other.example"]), BAD),
            "code": UNITS,
            "comparator": st.one_of(st.sampled_from(["<", "<=", ">", ">=", "~"]), BAD),
        },
    ),
    BAD,
)
PERIODS = st.one_of(st.fixed_dictionaries({}, optional={"start": DATE_TIMES, "end": DATE_TIMES}), BAD)
REFERENCES = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "reference": st.one_of(
                st.sampled_from(
                    [
                        "Patient/p1",
                        "https://ehr.example/fhir/Patient/p1/_history/3",
                        "Patient/p2",
                        "#med1",
                        "#other",
                    ]
                ),
                BAD,
            ),
            "display": st.just("someone"),
        },
    ),
    BAD,
)
STATUSES = st.one_of(
    st.sampled_from(
        [
            "final",
            "amended",
            "preliminary",
            "entered-in-error",
            "completed",
            "in-progress",
            "stopped",
            "not-done",
            "x",
        ]
    ),
    BAD,
)
ANY = st.deferred(lambda: st.one_of(BAD, CODEABLES, QUANTITIES, DATE_TIMES))

# element (a dotted path; digits index lists) -> what may replace it
COMMON = {
    "id": st.one_of(st.sampled_from(["o-1.2", "o_1", "x" * 256]), BAD),
    "status": STATUSES,
    "subject": REFERENCES,
    "subject.reference": st.one_of(st.sampled_from(["Patient/p2", "Patient/p1/", "p1"]), BAD),
}
CODE = {
    "code": CODEABLES,
    "code.coding": st.one_of(st.lists(CODINGS, max_size=3), BAD),
    "code.coding.0": st.one_of(CODINGS, BAD),
    "code.coding.0.code": CODES,
    "code.coding.0.system": SYSTEMS,
    "code.coding.1": CODINGS,
    "code.text": TEXTS,
}
OBSERVATION_MUTATIONS = (
    COMMON
    | CODE
    | {
        "effectiveDateTime": DATE_TIMES,
        "effectiveInstant": DATE_TIMES,
        "effectivePeriod": PERIODS,
        "effectivePeriod.start": DATE_TIMES,
        "effectiveTiming": st.just({"event": ["2025-03-01"]}),
        "valueQuantity": QUANTITIES,
        "valueQuantity.value": DECIMALS,
        "valueQuantity.unit": UNITS,
        "valueQuantity.code": UNITS,
        "valueQuantity.system": SYSTEMS,
        "valueQuantity.comparator": st.one_of(st.sampled_from(["<", ">"]), BAD),
        "valueString": TEXTS,
        "valueInteger": INTEGERS,
        "valueCodeableConcept": CODEABLES,
        "valueBoolean": st.booleans(),
        "dataAbsentReason": CODEABLES,
        "interpretation": st.one_of(st.lists(CODEABLES, max_size=2), BAD),
        "referenceRange": st.one_of(
            st.lists(st.fixed_dictionaries({}, optional={"high": QUANTITIES}), max_size=2), BAD
        ),
        "referenceRange.0.high.value": DECIMALS,
        "component": st.one_of(
            st.lists(st.fixed_dictionaries({"code": CODEABLES, "valueQuantity": QUANTITIES}), max_size=2), BAD
        ),
        "component.0.valueQuantity.value": DECIMALS,
        "component.0.valueString": st.just("x"),
        "component.0.code": CODEABLES,
    }
)
ADMINISTRATION_MUTATIONS = COMMON | {
    "medicationCodeableConcept": CODEABLES,
    "medicationCodeableConcept.coding.0.code": CODES,
    "medicationCodeableConcept.text": TEXTS,
    "medicationReference": REFERENCES,
    "effectiveDateTime": DATE_TIMES,
    "effectivePeriod": PERIODS,
    "effectivePeriod.start": DATE_TIMES,
    "effectivePeriod.end": DATE_TIMES,
    "dosage": st.one_of(st.fixed_dictionaries({}, optional={"dose": QUANTITIES}), BAD),
    "dosage.dose.value": DECIMALS,
    "dosage.dose.unit": UNITS,
    "contained": st.one_of(
        st.lists(
            st.sampled_from(
                [{"resourceType": "Organization", "id": "org1"}, {"resourceType": "Medication"}, None]
            )
        ),
        BAD,
    ),
    "contained.0.id": st.one_of(
        st.sampled_from(["med1", "other", "bad id"]), BAD
    ),  # the contained Medication
    "contained.0.code": CODEABLES,
}
PROCEDURE_MUTATIONS = (
    COMMON
    | CODE
    | {
        "performedDateTime": DATE_TIMES,
        "performedPeriod": PERIODS,
        "performedPeriod.end": DATE_TIMES,
        "performedString": st.just("last spring"),
        "performedAge": st.just({"value": 40, "unit": "a"}),
    }
)

_SUBJECT = {"reference": "Patient/p1"}
OBSERVATIONS = [
    creatinine_template := {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "2160-0", "display": "Creatinine"}]},
        "subject": _SUBJECT,
        "effectiveDateTime": "2025-03-01T08:30:00+08:00",
        "valueQuantity": {"value": 1.2, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
        "referenceRange": [{"high": {"value": 1.3, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}}],
    },
    creatinine_template
    | {
        "code": {
            "coding": [{"system": "http://hospital-east.example/fhir/lis", "code": "0045"}],
            "text": "肌酐",
        },
        "valueQuantity": {"value": 88.4, "unit": "μmol/L", "system": UCUM, "code": "umol/L"},
        "effectivePeriod": {"start": "2025-03-01", "end": "2025-03-02"},
        "effectiveDateTime": DELETE,
    },
    creatinine_template
    | {
        "code": {"coding": [{"system": LOINC, "code": "89247-1"}]},
        "valueQuantity": DELETE,
        "valueInteger": 1,
    },
    creatinine_template
    | {
        "code": {"coding": [{"system": LOINC, "code": "89247-1"}]},
        "valueQuantity": DELETE,
        "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA9622-7"}]},
    },
    creatinine_template
    | {
        "code": {"coding": [{"system": LOINC, "code": "59408-5"}]},
        "valueQuantity": {"value": 97, "unit": "%", "system": UCUM, "code": "%"},
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "3151-8"}]},
                "valueQuantity": {"value": 2, "unit": "L/min"},
            }
        ],
        "effectiveInstant": "2025-03-01T08:30:00.123Z",
        "effectiveDateTime": DELETE,
    },
    creatinine_template
    | {
        "code": {"coding": [{"system": LOINC, "code": "1742-6"}]},
        "valueQuantity": DELETE,
        "valueString": "<45 U/L",
    },
]
ADMINISTRATIONS = [
    blinatumomab := {
        "resourceType": "MedicationAdministration",
        "id": "m1",
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [{"system": ATC, "code": "L01XC19"}],
            "text": "Blincyto 35ug",
        },
        "subject": _SUBJECT,
        "effectivePeriod": {"start": "2025-03-01T09:00:00+08:00", "end": "2025-03-03T09:00:00+08:00"},
        "dosage": {"dose": {"value": 56, "unit": "ug", "system": UCUM, "code": "ug"}},
    },
    blinatumomab
    | {
        "medicationCodeableConcept": DELETE,
        "medicationReference": {"reference": "#med1"},
        "contained": [
            {
                "resourceType": "Medication",
                "id": "med1",
                "code": {
                    "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1597258"}]
                },
            },
            {"resourceType": "Organization", "id": "org1"},
        ],
        "effectivePeriod": DELETE,
        "effectiveDateTime": "2025-03-01",
    },
    blinatumomab | {"medicationCodeableConcept": {"text": "Blincyto infusion"}},
]
PROCEDURES = [
    transplant := {
        "resourceType": "Procedure",
        "id": "p1",
        "status": "completed",
        "code": {"coding": [{"system": CPT, "code": "38241"}]},
        "subject": _SUBJECT,
        "performedDateTime": "2025-03-17T14:31:00+08:00",
    },
    transplant
    | {
        "code": {"coding": [{"system": CPT, "code": "38206"}]},
        "performedDateTime": DELETE,
        "performedPeriod": {"start": "2025-03-06T09:31:00+08:00", "end": "2025-03-06T14:09:00+08:00"},
    },
]


def _without_deleted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_deleted(v) for k, v in value.items() if v is not DELETE}
    if isinstance(value, list):
        return [_without_deleted(v) for v in value]
    return value


def _replace(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set (or with DELETE remove) the element at ``path`` if its parent exists."""
    *parents, last = path.split(".")
    node: Any = raw
    for name in parents:
        node = (
            node[int(name)]
            if isinstance(node, list) and name.isdigit() and int(name) < len(node)
            else (node.get(name) if isinstance(node, dict) else None)
        )
    if isinstance(node, dict):
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = None if value is DELETE else value


def _contained_medication(raw: dict[str, Any]) -> bool:
    contained = raw.get("contained")
    first = contained[0] if isinstance(contained, list) and contained else None
    return isinstance(first, dict) and first.get("resourceType") == "Medication"


@st.composite
def _mutated(
    draw: st.DrawFn, templates: list[dict[str, Any]], mutations: dict[str, st.SearchStrategy[Any]]
) -> dict[str, Any]:
    raw: dict[str, Any] = orjson.loads(orjson.dumps(_without_deleted(draw(st.sampled_from(templates)))))
    for path in draw(st.lists(st.sampled_from(sorted(mutations)), max_size=4, unique=True)):
        if path.startswith("contained.0.") and not _contained_medication(raw):
            continue  # other contained resources are not read: their errors are the documented difference
        value = draw(st.one_of(mutations[path], st.just(DELETE)))
        _replace(raw, path, value if value is DELETE else copy.deepcopy(value))  # sampled values are shared
    return raw


GENERATED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _assert_facts_as_validated(result: engine.MappingResult) -> None:
    """Facts are built without validation (``context.fact``): each must be what validation makes of it."""
    for fact in result.facts:
        validated = Fact.model_validate(fact.model_dump())
        assert validated == fact
        assert validated.model_dump_json() == fact.model_dump_json()
        # What pydantic keeps on the instance (``Fact.trusted`` sets it by hand): the same.
        assert list(vars(validated)) == list(vars(fact))
        assert validated.model_fields_set == fact.model_fields_set
        assert (validated.__pydantic_extra__, validated.__pydantic_private__) == (None, None)
        assert (fact.__pydantic_extra__, fact.__pydantic_private__) == (None, None)
        for name in Fact.model_fields:
            assert type(getattr(validated, name)) is type(getattr(fact, name)), name


def _assert_parity(raw: dict[str, Any]) -> None:
    lean_result, r4b_result = both(raw)
    assert lean_result == r4b_result
    if lean_result[0] == "mapped":
        result = lean_result[1]
        _assert_facts_as_validated(result)
        kept = result.facts or result.issues or result.ignored or result.not_counted or result.outside
        assert kept  # nothing vanishes


@GENERATED
@given(_mutated(OBSERVATIONS, OBSERVATION_MUTATIONS))
def test_generated_observations_map_identically(raw: dict[str, Any]) -> None:
    _assert_parity(raw)


@GENERATED
@given(_mutated(ADMINISTRATIONS, ADMINISTRATION_MUTATIONS))
def test_generated_administrations_map_identically(raw: dict[str, Any]) -> None:
    _assert_parity(raw)


@GENERATED
@given(_mutated(PROCEDURES, PROCEDURE_MUTATIONS))
def test_generated_procedures_map_identically(raw: dict[str, Any]) -> None:
    _assert_parity(raw)


def test_the_templates_map_to_facts() -> None:
    for template in OBSERVATIONS + ADMINISTRATIONS[:2] + PROCEDURES:
        lean_result, r4b_result = both(_without_deleted(template))
        assert lean_result == r4b_result
        assert lean_result[0] == "mapped" and lean_result[1].facts, template


# ----------------------------------------------------------------- the decision: unread elements


def creatinine(**fields: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "2160-0"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-03-01T08:30:00+08:00",
        "valueQuantity": {"value": 1.2, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
    }
    raw.update(fields)
    return {k: v for k, v in raw.items() if v is not None}


UNREAD_ERRORS = {
    "performer reference is a string": {"performer": ["Practitioner/1"]},
    "performer reference has a bad type": {"performer": [{"reference": 5}]},
    "unknown element": {"valueQuantityy": {"value": 1}},
    "R5 element": {"instantiatesReference": {"reference": "ObservationDefinition/1"}},
    "bad issued instant": {"issued": "2025-03-01"},
    "bad meta.lastUpdated": {"meta": {"lastUpdated": "yesterday"}},
    "note without its required text": {"note": [{"authorString": "Dr X"}]},
    "category not a list": {"category": {"coding": [{"code": "laboratory"}]}},
    "extension without url": {"extension": [{"valueString": "x"}]},
    "contained resource of an unknown type": {"contained": [{"resourceType": "NoSuchResource", "id": "x"}]},
}


@pytest.mark.parametrize("extra", UNREAD_ERRORS.values(), ids=UNREAD_ERRORS.keys())
def test_an_error_in_an_unread_element_does_not_stop_mapping(extra: dict[str, Any]) -> None:
    raw = creatinine(**extra)
    with pytest.raises((pydantic.ValidationError, KeyError)):  # KeyError: a fhir.resources bug
        get_fhir_model_class("Observation").model_validate(raw)
    lean_result = outcome(lean_models.Observation, raw)
    assert lean_result == outcome(lean_models.Observation, creatinine())
    assert lean_result[0] == "mapped" and len(lean_result[1].facts) == 1


READ_ERRORS = {
    "status with two spaces": {"status": "fi  nal"},
    "status missing": {"status": None},
    "code missing": {"code": None},
    "coding not a list": {"code": {"coding": {"system": LOINC, "code": "2160-0"}}},
    "null coding": {"code": {"coding": [None]}},
    "code with a trailing space": {"code": {"coding": [{"system": LOINC, "code": "2160-0 "}]}},
    "empty display": {"code": {"coding": [{"system": LOINC, "code": "2160-0", "display": ""}]}},
    "empty subject reference": {"subject": {"reference": ""}},
    "subject as a string": {"subject": "Patient/p1"},
    "dateTime without offset": {"effectiveDateTime": "2025-03-01T08:30:00"},
    "impossible date": {"effectiveDateTime": "2025-02-30"},
    "two effective[x]": {"effectiveInstant": "2025-03-01T08:30:00Z"},
    "two value[x]": {"valueString": "1.2 mg/dL"},
    "value is text": {"valueQuantity": {"value": "1,2", "unit": "mg/dL"}},
    "value is a boolean": {"valueQuantity": {"value": True, "unit": "mg/dL"}},
    "integer out of range": {"valueQuantity": None, "valueInteger": 2**31},
    "bad id": {"id": "o/1"},
    "component without code": {"component": [{"valueQuantity": {"value": 1}}]},
    "reference range high is text": {"referenceRange": [{"high": {"value": "high"}}]},
}


@pytest.mark.parametrize("fields", READ_ERRORS.values(), ids=READ_ERRORS.keys())
def test_an_error_in_a_read_element_rejects_the_resource(fields: dict[str, Any]) -> None:
    raw = creatinine(**fields)
    assert outcome(lean_models.Observation, raw) == ("invalid", None)
    assert outcome(get_fhir_model_class("Observation"), raw) == ("invalid", None)


def test_required_elements_of_administrations_and_procedures() -> None:
    admin = {
        "resourceType": "MedicationAdministration",
        "id": "m1",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "L01XC19"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-03-01",
    }
    assert both(admin)[0][0] == "mapped"
    for missing in ("medicationCodeableConcept", "subject", "effectiveDateTime", "status"):
        broken = {k: v for k, v in admin.items() if k != missing}
        assert both(broken) == (("invalid", None), ("invalid", None)), missing
    # status may be absent when an extension says why (R4 §2.6 "special case")
    explained = {k: v for k, v in admin.items() if k != "status"} | {
        "_status": {
            "extension": [
                {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}
            ]
        }
    }
    lean_result, r4b_result = both(explained)
    assert lean_result == r4b_result and lean_result[0] == "mapped"
    procedure = {
        "resourceType": "Procedure",
        "id": "p1",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
    }
    assert both(procedure)[0][0] == "mapped"
    assert both({k: v for k, v in procedure.items() if k != "subject"}) == (
        ("invalid", None),
        ("invalid", None),
    )


# ----------------------------------------------------------------- through the sync


@pytest.fixture
def east_copy(tmp_path: Path) -> tuple[config_mod.Config, Path, str]:
    """demo-east's roster and patients, with an Observation file the test writes."""
    data = tmp_path / "data" / "demo-east"
    data.mkdir(parents=True)
    demo_east = paths.demo_data_dir() / "demo-east"
    shutil.copy(demo_east / "roster.csv", data / "roster.csv")
    shutil.copy(demo_east / "Patient.ndjson", data / "Patient.ndjson")
    people = roster.load_roster(data / "roster.csv")
    patient = next(
        line.resource["id"]
        for line in ndjson.read_resources(data, "Patient")
        if isinstance(line, source.SourceLine)
        and people.subject_for_identifiers(roster.patient_identifiers(line.resource))
    )
    (tmp_path / "key").write_text("0123456789abcdef-test-only-secret\n")
    (tmp_path / "key").chmod(0o600)
    config = config_mod.config_from_dict(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
            "privacy": {"hmac_key_file": str(tmp_path / "key")},
            "sites": [
                {
                    "id": "demo-east",
                    "timezone": "Asia/Shanghai",
                    "roster": str(data / "roster.csv"),
                    "source": {"kind": "ndjson", "path": str(data)},
                }
            ],
            "repository": {"kind": "file", "path": str(tmp_path / "repo")},
        },
        base_dir=tmp_path,
    )
    return config, data, patient


def _sync(
    config: config_mod.Config,
    observations: list[dict[str, Any]],
    data: Path,
    validation: Mode = "lean",
) -> tuple[list[str], list[models.IssueRow]]:
    (data / "Observation.ndjson").write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in observations))
    sessions = db.open_store(config.store.url)
    sync.sync_site(sync.SiteSetup.load(config, config.sites[0]), sessions, validation=validation)
    with sessions() as session:
        facts = sorted(session.scalars(sa.select(models.FactRow.source_ref)))
        issues = list(session.scalars(sa.select(models.IssueRow).where(models.IssueRow.status == "open")))
    return facts, issues


def test_sync_maps_unread_errors_and_rejects_read_errors(
    east_copy: tuple[config_mod.Config, Path, str],
) -> None:
    config, data, patient = east_copy
    subject = {"reference": f"Patient/{patient}"}
    unread = creatinine(id="unread", subject=subject, performer=[{"reference": 5}], issued="March 1st")
    read = creatinine(
        id="read",
        subject=subject,
        effectiveDateTime="2025-03-01T08:30:00",
        valueQuantity={"value": "John Smith"},
    )
    facts, issues = _sync(config, [unread, read], data)
    assert facts == ["Observation/unread"]
    invalid = [i for i in issues if i.kind == IssueKind.INVALID_RESOURCE.value]
    assert [i.key for i in invalid] == ["demo-east|invalid_resource|Observation/read"]
    assert "effectiveDateTime" in invalid[0].detail and "valueQuantity.value" in invalid[0].detail
    assert (
        "John" not in invalid[0].detail and "2025-03-01T08:30:00" not in invalid[0].detail
    )  # no input values


def test_full_r4b_validation_is_one_switch_away(east_copy: tuple[config_mod.Config, Path, str]) -> None:
    config, data, patient = east_copy
    unread = creatinine(
        id="unread", subject={"reference": f"Patient/{patient}"}, performer=[{"reference": 5}]
    )
    facts, issues = _sync(config, [unread], data, validation="r4b")
    assert facts == []
    assert [i.key for i in issues if i.kind == IssueKind.INVALID_RESOURCE.value] == [
        "demo-east|invalid_resource|Observation/unread"
    ]


def _stored(config: config_mod.Config) -> tuple[list[tuple[str, str]], list[str], list[tuple[str, str]]]:
    """(facts, open issue keys, source rows) as comparable lists."""
    sessions = db.open_store(config.store.url)
    with sessions() as session:
        facts = [
            (ref, payload)
            for ref, payload in session.execute(sa.select(models.FactRow.source_ref, models.FactRow.payload))
        ]
        issues = sorted(
            session.scalars(sa.select(models.IssueRow.key).where(models.IssueRow.status == "open"))
        )
        query = sa.select(models.SourceResource.resource_id, models.SourceResource.outcome)
        sources = [(resource_id, outcome) for resource_id, outcome in session.execute(query)]
    return sorted(facts), issues, sorted(sources)


def test_a_page_written_in_bulk_equals_a_full_resync_and_a_remap(
    east_copy: tuple[config_mod.Config, Path, str],
) -> None:
    """New rows of a page go in with one INSERT per table: same state as row by row."""
    config, data, patient = east_copy
    subject = {"reference": f"Patient/{patient}"}
    lines = [
        creatinine(id="a", subject=subject),
        creatinine(id="b", subject=subject, valueQuantity={"value": 88.4, "unit": "umol/L"}),
        creatinine(id="a", subject=subject),  # the same line twice in one page
        creatinine(id="c", subject=subject, status="preliminary"),
        creatinine(id="d", subject=subject, effectiveDateTime="2025-03"),
    ]
    facts, _ = _sync(config, lines, data)
    assert facts == ["Observation/a", "Observation/b"]
    first = _stored(config)
    assert [source for source, _ in first[2]] == ["a", "b", "c", "d"]
    sessions = db.open_store(config.store.url)
    setup = sync.SiteSetup.load(config, config.sites[0])
    summary = sync.sync_site(setup, sessions, full=True)
    assert summary.resources_mapped == 5
    assert _stored(config) == first
    sync.remap_site(setup, sessions, everything=True)
    assert _stored(config) == first


def test_a_fact_given_integers_holds_floats_as_validation_would() -> None:
    """``context.fact`` skips validation; its one coercion (numbers to float) must still happen."""
    from adapter.mapping import context

    concept = next(c for c in CAT.concepts.values() if c.spec.unit is not None)
    start = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
    built = context.fact(
        CTX,
        subject_id="S-001",
        concept=concept,
        ref="Observation/1",
        source_version="v:1",
        status="final",
        start=start,
        value=90,
        reference_high=100,
    )
    assert type(built.value) is float and type(built.reference_high) is float
    assert built.model_dump_json() == Fact.model_validate(built.model_dump()).model_dump_json()
    _assert_facts_as_validated(engine.MappingResult(facts=[built]))


def test_a_trusted_fact_takes_defaults_and_refuses_missing_or_unknown_fields() -> None:
    start = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
    required = {
        "site": "demo-east",
        "subject_id": "S-001",
        "concept": "anc",
        "kind": "lab",
        "effective_start": start,
        "local_date": start.date(),
        "status": "final",
        "source_ref": "Observation/1",
        "source_version": "v:1",
        "catalog_version": "c1",
    }
    trusted = Fact.trusted(required)
    assert trusted == Fact.model_validate(required) and trusted.attributes == {}
    assert trusted.attributes is not Fact.trusted(required).attributes  # no shared mutable default
    for wrong in ({k: v for k, v in required.items() if k != "status"}, {**required, "mrn": "123"}):
        with pytest.raises(ValueError, match="a fact needs exactly the fields"):
            Fact.trusted(wrong)
