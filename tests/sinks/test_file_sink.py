"""The file sink is idempotent, ordered and atomic."""

from __future__ import annotations

from pathlib import Path

import orjson

from adapter.sinks.base import Delivery
from adapter.sinks.file import FileSink


def item(n: int, op: str = "upsert", record_id: str = "r1", value: int = 1) -> Delivery:
    return Delivery(
        item_id=n,
        record_id=record_id,
        record_type="Transplant",
        subject_id="S-1",
        operation=op,  # type: ignore[arg-type]
        payload={"record_id": record_id, "subject_id": "S-1", "value": value},
    )


def lines(folder: Path) -> list[dict[str, object]]:
    return [orjson.loads(x) for x in (folder / "Transplant.ndjson").read_bytes().splitlines()]


def test_redelivery_changes_nothing(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    batch = [item(1), item(2, record_id="r2")]
    assert all(r.ok for r in sink.deliver(batch))
    first = (tmp_path / "Transplant.ndjson").read_bytes()
    sink.deliver(batch)
    assert (tmp_path / "Transplant.ndjson").read_bytes() == first
    manifest = orjson.loads((tmp_path / "manifest.json").read_bytes())
    assert manifest["files"]["Transplant.ndjson"]["records"] == 2


def test_batch_order_is_applied_and_retract_removes(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    sink.deliver([item(1, value=1), item(2, value=2), item(3, record_id="r2")])
    assert [r["value"] for r in lines(tmp_path)] == [2, 1]
    sink.deliver([item(4, op="retract"), item(5, op="retract")])  # retracting twice is harmless
    assert [r["record_id"] for r in lines(tmp_path)] == ["r2"]


def test_unwritable_folder_reports_failure_not_exception(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    results = FileSink(blocker / "repo").deliver([item(1)])
    assert [r.ok for r in results] == [False]
    assert results[0].error and "cannot write" in results[0].error


def test_a_file_changed_behind_the_sinks_back_is_read_again(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    sink.deliver([item(1), item(2, record_id="r2")])
    # Someone restores an older copy of the file between two batches of one drain.
    (tmp_path / "Transplant.ndjson").write_bytes(
        orjson.dumps({"record_id": "r9", "subject_id": "S-0"}) + b"\n"
    )
    sink.deliver([item(3, record_id="r3")])
    assert [r["record_id"] for r in lines(tmp_path)] == ["r9", "r3"]
    manifest = orjson.loads((tmp_path / "manifest.json").read_bytes())
    assert manifest["files"]["Transplant.ndjson"]["records"] == 2


def test_many_batches_give_the_same_bytes_as_one(tmp_path: Path) -> None:
    batch = [item(n, record_id=f"r{n % 7}", value=n) for n in range(1, 60)]
    one, many = FileSink(tmp_path / "one"), FileSink(tmp_path / "many")
    one.deliver(batch)
    for start in range(0, len(batch), 5):
        many.deliver(batch[start : start + 5])
    assert (tmp_path / "one" / "Transplant.ndjson").read_bytes() == (
        tmp_path / "many" / "Transplant.ndjson"
    ).read_bytes()
    assert (
        orjson.loads((tmp_path / "one" / "manifest.json").read_bytes())["files"]
        == orjson.loads((tmp_path / "many" / "manifest.json").read_bytes())["files"]
    )
