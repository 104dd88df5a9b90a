"""The optional per-subject date shift: every date moves, intervals stay, nobody keeps true dates."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pydantic
import pytest

from adapter import privacy
from adapter.config import PrivacyConfig

from support import GOLDEN

SECRET = b"0123456789abcdef-test-only"


def eligibility() -> dict[str, Any]:
    line = (GOLDEN / "EligibilityAssessment.ndjson").read_bytes().splitlines()[0]
    record = orjson.loads(line)
    return {
        **record,
        "evidence": ["Observation/1"],
        "criteria": [{**c, "evidence": []} for c in record["criteria"]],
    }


def test_shift_is_per_subject_keyed_bounded_and_never_zero() -> None:
    shifts = [privacy.subject_date_shift(SECRET, f"S-{n}", 14) for n in range(400)]
    assert all(-14 <= s <= 14 and s != 0 for s in shifts)
    assert len(set(shifts)) == 28, "every offset in range gets used"
    assert shifts == [privacy.subject_date_shift(SECRET, f"S-{n}", 14) for n in range(400)]
    assert shifts != [privacy.subject_date_shift(b"another-site-secret!", f"S-{n}", 14) for n in range(400)]
    assert privacy.subject_date_shift(SECRET, "S-1", 0) == 0


def test_every_date_moves_by_the_same_days_and_nothing_else_changes() -> None:
    record = eligibility()
    days = privacy.subject_date_shift(SECRET, record["subject_id"], 30)
    shifted = privacy.pseudonymize_record(record, SECRET, "demo-east", max_date_shift_days=30)
    plain = privacy.pseudonymize_record(record, SECRET, "demo-east")

    def moved(value: str) -> str:
        return (dt.date.fromisoformat(value) + dt.timedelta(days=days)).isoformat()

    assert shifted["anchor_date"] == moved(plain["anchor_date"])
    assert shifted["window_start"] == moved(plain["window_start"])
    for before, after in zip(plain["criteria"], shifted["criteria"], strict=True):
        assert after["date"] == (moved(before["date"]) if before["date"] else None)
        assert {k: v for k, v in after.items() if k != "date"} == {
            k: v for k, v in before.items() if k != "date"
        }
    unchanged = ("record_id", "subject_id", "catalog_version", "evidence", "overall", "day_from_transplant")
    assert all(shifted.get(key) == plain.get(key) for key in unchanged)
    assert plain["anchor_date"] == record["anchor_date"], "off by default"


def test_date_times_and_non_dates() -> None:
    value = {"at": "2025-03-01T10:00:00Z", "local": "2025-02-28T23:30:00+08:00", "id": "2025-13-99", "n": 3}
    assert privacy.shift_dates(value, 2) == {
        "at": "2025-03-03T10:00:00Z",
        "local": "2025-03-02T23:30:00+08:00",
        "id": "2025-13-99",
        "n": 3,
    }


def test_setting_is_off_by_default_and_bounded() -> None:
    assert PrivacyConfig().date_shift_days == 0
    assert PrivacyConfig(date_shift_days=365).date_shift_days == 365
    with pytest.raises(pydantic.ValidationError):
        PrivacyConfig(date_shift_days=400)


def test_sync_applies_the_configured_shift_end_to_end(tmp_path: Any) -> None:
    """With [privacy] date_shift_days set, every outgoing date moves; offsets do not."""
    from adapter.service import job

    from golden import repository_records
    from support import prepare_demo_workdir

    base = prepare_demo_workdir(tmp_path / "shifted")
    config = base.model_copy(update={"privacy": base.privacy.model_copy(update={"date_shift_days": 14})})
    job.run_once(config, config.sites)
    shifted = {r["subject_id"]: r for r in repository_records(config)["Transplant.ndjson"]}
    golden = {
        r["subject_id"]: r
        for r in map(orjson.loads, (GOLDEN / "Transplant.ndjson").read_bytes().splitlines())
    }
    assert shifted.keys() == golden.keys()
    for subject, record in shifted.items():
        moved = dt.date.fromisoformat(record["day0"]) - dt.date.fromisoformat(golden[subject]["day0"])
        assert moved.days == privacy.subject_date_shift(privacy.load_secret(config.privacy), subject, 14)
        assert moved.days != 0
        assert record["day_from_transplant"] == golden[subject]["day_from_transplant"]
