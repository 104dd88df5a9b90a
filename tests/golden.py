"""Golden files for the demo run: what the trial repository and the worklist hold.

Regenerate ONLY on purpose, after a reviewed change to a mapping, a derivation
or the demo data, with:

    .venv/bin/python tests/golden.py --update

and commit the diff of tests/data/demo/expected/ with the change that caused it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapter import config as config_mod
from adapter.service import job
from adapter.store import db, models

from support import GOLDEN, prepare_demo_workdir

ISSUE_FIELDS = ("key", "kind", "status", "subject_id", "concept", "code", "unit", "value", "detail")


def repository_records(config: config_mod.Config) -> dict[str, list[dict[str, Any]]]:
    """Every record file of the file repository, parsed."""
    return ndjson_files(config.repository.path)  # type: ignore[union-attr]  # the demo's is a file repository


def golden_records() -> dict[str, list[dict[str, Any]]]:
    """The golden record files: what the demo run must deliver, in the same form."""
    return ndjson_files(GOLDEN)


def golden_issues() -> list[dict[str, Any]]:
    """The golden worklist: ``issue_list`` of the demo run."""
    return list(orjson.loads((GOLDEN / "issues.json").read_bytes()))


def ndjson_files(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Each ``*.ndjson`` file of ``folder`` by name, parsed line by line, so runs compare as data."""
    return {
        path.name: [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
        for path in sorted(folder.glob("*.ndjson"))
    }


def issue_list(config: config_mod.Config) -> list[dict[str, Any]]:
    sessions = db.open_store(config.store.url)
    with sessions() as session:
        rows = session.scalars(sa.select(models.IssueRow).order_by(models.IssueRow.key))
        return [{field: getattr(row, field) for field in ISSUE_FIELDS} for row in rows]


def update() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = prepare_demo_workdir(Path(tmp) / "demo")
        job.run_once(config, config.sites)
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for old in GOLDEN.glob("*"):
            old.unlink()
        for name, records in repository_records(config).items():
            (GOLDEN / name).write_bytes(
                b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in records)
            )
        (GOLDEN / "issues.json").write_bytes(
            orjson.dumps(issue_list(config), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )


if __name__ == "__main__":
    if "--update" not in sys.argv:
        sys.exit(__doc__)
    update()
