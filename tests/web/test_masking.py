"""Masking by structure: which fields are references, whatever characters a site put in its ids."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from adapter import privacy
from adapter.web.masking import RefMask

SECRET = b"masking-tests-only-secret-0123456789"
VIEWER = RefMask(SECRET, active=True)
MANAGER = RefMask(SECRET, active=False)


def hashed(ref: str, site: str = "east") -> str:
    return privacy.hash_ref(SECRET, site, ref)


@pytest.mark.parametrize(
    "ref", ["Observation/x12_ZY02413241", "Observation/a b", "Patient/pe:1", "Procedure/ü-1", "Observation/1"]
)
def test_a_reference_field_is_masked_whole(ref: str) -> None:
    assert VIEWER.ref(ref, "east") == hashed(ref)
    assert VIEWER.source(ref, "east") == hashed(ref)
    assert MANAGER.ref(ref, "east") == ref


def test_issue_keys_mask_their_scope_by_kind_of_scope() -> None:
    key = "east|invalid_resource|Observation/x12_ZY02413241"
    assert VIEWER.key(key) == f"east|invalid_resource|{hashed('Observation/x12_ZY02413241')}"
    patient = "east|patient_not_on_roster|patient:Patient/pt_X9_ZZ77"
    assert VIEWER.key(patient) == f"east|patient_not_on_roster|patient:{hashed('Patient/pt_X9_ZZ77')}"
    for kept in ("east|unknown_code|code:http://lis|0045", "east|retraction_held|retire:Observation"):
        assert VIEWER.key(kept) == kept
    assert MANAGER.key(key) == key


def test_a_detail_is_masked_with_the_issue_s_own_references_first() -> None:
    issue = SimpleNamespace(
        site="east",
        scope="text:Blina",
        detail="Observation/a b:c has no code, only the text 'Blina'; "
        "see Observation/x12_ZY0241, Medication/m_1'",
    )
    masked = VIEWER.detail(issue, ["Observation/a b:c", "derive:S-1"])
    assert "a b:c" not in masked and "x12_ZY0241" not in masked and "m_1" not in masked
    assert hashed("Observation/a b:c") in masked and hashed("Observation/x12_ZY0241") in masked
    assert "only the text 'Blina'" in masked


def test_a_known_short_reference_never_masks_part_of_a_longer_one() -> None:
    masked = VIEWER.text("Observation/x1 and Observation/x12_9", "east", ["Observation/x1"])
    assert masked == f"{hashed('Observation/x1')} and {hashed('Observation/x12_9')}"


def test_the_worklist_drops_the_leading_reference_it_shows_beside() -> None:
    detail = "Observation/o_1: creatinine has no unit"
    issue = SimpleNamespace(site="east", scope="Observation/o_1", detail=detail)
    assert MANAGER.detail(issue, leading_ref=False) == "creatinine has no unit"
    assert VIEWER.detail(issue) == f"{hashed('Observation/o_1')}: creatinine has no unit"


def test_audit_details_mask_the_issue_keys_they_list() -> None:
    detail = {
        "site": "east",
        "issue": "east|unknown_unit|Observation/o_1",
        "issues_resolved": ["east|unknown_unit|Observation/o_1", "east|unknown_code|code:x|1"],
        "issues_opened": ["east|patient_not_on_roster|patient:Patient/p_1"],
        "reason": "duplicate of Observation/o_2",
        "records_changed": 3,
    }
    masked = VIEWER.audit_detail(detail, "east")
    assert masked["issue"] == f"east|unknown_unit|{hashed('Observation/o_1')}"
    assert masked["issues_resolved"][1] == "east|unknown_code|code:x|1"
    assert "p_1" not in masked["issues_opened"][0] and "o_2" not in masked["reason"]
    assert masked["records_changed"] == 3
    assert MANAGER.audit_detail(detail, "east") == detail
    assert VIEWER.target("east|issue.ignore|Observation/o_1", "east").endswith(hashed("Observation/o_1"))
    assert VIEWER.target("east:units:umol per litre", "east") == "east:units:umol per litre"
