"""The service notices a changed ``[repository]`` at start and on reload, and names the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from adapter import config as config_mod
from adapter import paths
from adapter.service import daemon as service_mod
from adapter.service import job

WriteConfig = Callable[..., Path]


def test_a_changed_repository_is_logged_at_start_and_on_reload(
    config_file: WriteConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = config_file(data=paths.demo_data_dir(), delivery_minutes=60)
    config = config_mod.load_config(path)
    job.run_once(config, config.sites)  # delivered to tmp_path / "repository"
    original = path.read_text()

    running = service_mod.Service(lambda: config_mod.load_config(path))
    with caplog.at_level("INFO", logger="adapter"):
        running.start()
        try:
            assert "the trial repository changed" not in caplog.text
            path.write_text(original.replace(str(tmp_path / "repository"), str(tmp_path / "elsewhere")))
            running.reload()
        finally:
            running.request_stop()
            stopped = running.serve()
    assert stopped.clean
    changed = [r for r in caplog.records if r.getMessage().startswith("the trial repository changed")]
    assert len(changed) == 1
    assert getattr(changed[0], "fix", None) == "trial-adapter push --resend"
    assert str(tmp_path / "elsewhere") in str(getattr(changed[0], "repository", ""))

    caplog.clear()
    restarted = service_mod.Service(lambda: config_mod.load_config(path))
    with caplog.at_level("INFO", logger="adapter"):
        restarted.start()
        restarted.request_stop()
        restarted.serve()
    assert "the trial repository changed" in caplog.text
