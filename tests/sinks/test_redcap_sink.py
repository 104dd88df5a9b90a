"""The redcap sink against REDCap's documented "Import Records" request and responses.

The request is a form POST (token, content=record, action=import,
format=json, type=flat, overwriteBehavior, data, returnContent,
returnFormat); success is ``{"count": N}``; errors are an HTTP error status
with ``{"error": "..."}`` (e.g. 400 for data REDCap refuses, 403 for a bad
token).  The error texts below are REDCap's own wording.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import orjson
import pydantic
import pytest
import requests
import responses

from adapter.sinks import settings
from adapter.sinks.redcap import REDACTED, RedcapSink
from adapter.sinks.redcap_rows import flatten

from .conftest import MakeDelivery

API = "https://redcap.example.org/api/"
FIELD_MAP: dict[str, Any] = {
    "EligibilityAssessment": {
        "event": "screening_arm_1",
        "fields": {
            "overall": "elig_organ_overall",
            "anchor_date": "elig_anchor_date",
            "criteria.creatinine.value": "elig_creat",
            "criteria.creatinine.status": "elig_creat_status",
        },
    },
    "TreatmentCycle": {
        "event": "treatment_arm_1",
        "instrument": "blinatumomab_cycle",
        "instance": "{number}",
        "fields": {
            "phase": "cyc_phase",
            "start": "cyc_start",
            "end": "cyc_end",
            "total_dose_mcg": "cyc_dose",
        },
    },
    "StemCellCollection": {"event": "transplant_arm_1", "fields": {"first_date": "pbsc_date"}},
    "Transplant": {"event": "transplant_arm_1", "fields": {"day0": "hsct_day0"}},
    "Reconstitution": {"event": "transplant_arm_1", "fields": {"date": "recon_date", "wbc": "recon_wbc"}},
    "MrdResult": {"skip": True},
}


def redcap_settings(**overrides: Any) -> settings.RedcapRepository:
    raw: dict[str, Any] = {"kind": "redcap", "url": API, "token_env": "REDCAP_TOKEN", "records": FIELD_MAP}
    raw.update(overrides)
    return settings.RedcapRepository.model_validate(raw)


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> RedcapSink:
    monkeypatch.setenv("REDCAP_TOKEN", "0123456789ABCDEF0123456789ABCDEF")
    return RedcapSink(redcap_settings())


def form(call: Any) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(call.request.body))


def of_type(records: list[dict[str, Any]], record_type: str) -> list[dict[str, Any]]:
    return [r for r in records if r["record_type"] == record_type]


@responses.activate
def test_import_request_follows_the_api_and_maps_fields(
    sink: RedcapSink, demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    cycle = of_type(demo_records, "TreatmentCycle")[0]
    eligibility = next(
        r for r in of_type(demo_records, "EligibilityAssessment") if r["subject_id"] == cycle["subject_id"]
    )
    responses.post(API, json={"count": 1})
    results = sink.deliver([make_delivery(eligibility), make_delivery(cycle)])
    assert all(r.ok for r in results)
    sent = form(responses.calls[0])
    assert {k: v for k, v in sent.items() if k != "data"} == {
        "token": "0123456789ABCDEF0123456789ABCDEF",
        "content": "record",
        "action": "import",
        "format": "json",
        "type": "flat",
        "overwriteBehavior": "overwrite",
        "forceAutoNumber": "false",
        "returnContent": "count",
        "returnFormat": "json",
    }
    rows = orjson.loads(sent["data"])
    creatinine = next(c for c in eligibility["criteria"] if c["criterion"] == "creatinine")
    assert rows == [
        {
            "record_id": eligibility["subject_id"],
            "redcap_event_name": "screening_arm_1",
            "elig_organ_overall": eligibility["overall"],
            "elig_anchor_date": eligibility["anchor_date"],
            "elig_creat": str(creatinine["value"]),
            "elig_creat_status": creatinine["status"],
        },
        {
            "record_id": cycle["subject_id"],
            "redcap_event_name": "treatment_arm_1",
            "redcap_repeat_instrument": "blinatumomab_cycle",
            "redcap_repeat_instance": str(cycle["number"]),
            "cyc_phase": cycle["phase"],
            "cyc_start": cycle["start"],
            "cyc_end": cycle["end"],
            "cyc_dose": "" if cycle["total_dose_mcg"] is None else f"{cycle['total_dose_mcg']:g}",
        },
    ]


@responses.activate
def test_rows_of_one_event_merge_and_skipped_types_send_nothing(
    sink: RedcapSink, demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    subject = of_type(demo_records, "Transplant")[0]["subject_id"]
    same_event = [
        r
        for r in demo_records
        if r["subject_id"] == subject
        and r["record_type"] in ("Transplant", "StemCellCollection", "Reconstitution")
    ]
    mrd = [r for r in demo_records if r["record_type"] == "MrdResult"][:3]
    responses.post(API, json={"count": 1})
    results = sink.deliver([make_delivery(r) for r in [*same_event, *mrd]])
    assert len(results) == len(same_event) + len(mrd) and all(r.ok for r in results)
    [row] = orjson.loads(form(responses.calls[0])["data"])
    assert {"hsct_day0", "pbsc_date", "recon_date", "recon_wbc"} <= set(row)
    responses.calls.reset()
    assert all(r.ok for r in sink.deliver([make_delivery(r) for r in mrd]))
    assert len(responses.calls) == 0


@responses.activate
def test_retraction_blanks_the_withdrawn_instance(
    sink: RedcapSink, demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    cycle = of_type(demo_records, "TreatmentCycle")[0]
    responses.post(API, json={"count": 1})
    assert sink.deliver([make_delivery(cycle, "retract")])[0].ok
    sent = form(responses.calls[0])
    assert sent["overwriteBehavior"] == "overwrite"
    assert orjson.loads(sent["data"]) == [
        {
            "record_id": cycle["subject_id"],
            "redcap_event_name": "treatment_arm_1",
            "redcap_repeat_instrument": "blinatumomab_cycle",
            "redcap_repeat_instance": str(cycle["number"]),
            "cyc_phase": "",
            "cyc_start": "",
            "cyc_end": "",
            "cyc_dose": "",
        }
    ]


@responses.activate
def test_normal_overwrite_behaviour_still_blanks_retractions(
    monkeypatch: pytest.MonkeyPatch, demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    monkeypatch.setenv("REDCAP_TOKEN", "t" * 32)
    sink = RedcapSink(redcap_settings(overwrite_behavior="normal"))
    cycles = of_type(demo_records, "TreatmentCycle")
    responses.post(API, json={"count": 1})
    assert all(r.ok for r in sink.deliver([make_delivery(cycles[0]), make_delivery(cycles[1], "retract")]))
    assert [form(c)["overwriteBehavior"] for c in responses.calls] == ["normal", "overwrite"]


@responses.activate
def test_refused_import_is_retried_per_subject_and_reports_redcaps_error(
    sink: RedcapSink, demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    transplants = of_type(demo_records, "Transplant")[:3]
    bad = transplants[1]["subject_id"]
    refusal = (
        f'"{bad}","hsct_day0","2025-13-45","The value you provided could not be validated because it does '
        'not follow the expected format. Please try again."'
    )

    def judge(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        rows = orjson.loads(dict(urllib.parse.parse_qsl(str(request.body)))["data"])
        if any(row["record_id"] == bad for row in rows):
            return 400, {}, orjson.dumps({"error": refusal}).decode()
        return 200, {}, orjson.dumps({"count": len(rows)}).decode()

    responses.add_callback(responses.POST, API, callback=judge)
    batch = [make_delivery(r) for r in transplants]
    results = {r.item_id: r for r in sink.deliver(batch)}
    assert [results[d.item_id].ok for d in batch] == [True, False, True]
    error = results[batch[1].item_id].error or ""
    assert "HTTP 400" in error and "could not be validated" in error
    assert len(responses.calls) == 1 + 3


@responses.activate
def test_a_bad_token_is_an_outage_for_the_whole_batch(
    sink: RedcapSink, demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    responses.post(API, status=403, json={"error": "You do not have permissions to use the API"})
    results = sink.deliver([make_delivery(r) for r in of_type(demo_records, "Transplant")])
    assert len(responses.calls) == 1
    assert all(r.outage and not r.ok for r in results)
    assert "You do not have permissions to use the API" in (results[0].error or "")


@responses.activate
@pytest.mark.parametrize("body", ['{"error": "Some unexpected problem"}', "<html>Maintenance</html>"])
def test_a_200_without_a_count_is_not_success(
    body: str, sink: RedcapSink, demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    responses.post(API, body=body)
    [result] = sink.deliver([make_delivery(of_type(demo_records, "Transplant")[0])])
    assert not result.ok and not result.outage


def test_a_field_the_record_lacks_fails_the_item_with_the_known_fields(
    monkeypatch: pytest.MonkeyPatch, demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    monkeypatch.setenv("REDCAP_TOKEN", "t" * 32)
    typo = {**FIELD_MAP, "Transplant": {"fields": {"day_0": "hsct_day0"}}}
    sink = RedcapSink(redcap_settings(records=typo))
    [result] = sink.deliver([make_delivery(of_type(demo_records, "Transplant")[0])])
    assert not result.ok
    assert "'day_0'" in (result.error or "") and "day0" in (result.error or "")


def test_preview_redacts_the_token(demo_records: list[dict[str, Any]], make_delivery: MakeDelivery) -> None:
    [plan] = RedcapSink(redcap_settings()).preview([make_delivery(of_type(demo_records, "Transplant")[0])])
    assert plan.body["token"] == REDACTED and plan.body["content"] == "record"
    assert plan.body["data"][0]["hsct_day0"] == of_type(demo_records, "Transplant")[0]["day0"]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ({k: v for k, v in FIELD_MAP.items() if k != "MrdResult"}, "no table for MrdResult"),
        ({**FIELD_MAP, "Mystery": {"skip": True}}, "unknown record type(s) Mystery"),
        (
            {**FIELD_MAP, "TreatmentCycle": {"instrument": "x", "fields": {"start": "s"}}},
            "needs both instrument",
        ),
        ({**FIELD_MAP, "Transplant": {}}, "set fields"),
    ],
)
def test_field_map_mistakes_are_config_errors(records: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        redcap_settings(records=records)


def test_flatten_names_criteria_by_criterion() -> None:
    flat = flatten({"a": 1, "criteria": [{"criterion": "lvef", "value": 60}], "flags": ["x", "y"]})
    assert flat == {"a": 1, "criteria.lvef.criterion": "lvef", "criteria.lvef.value": 60, "flags": ["x", "y"]}
