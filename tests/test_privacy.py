"""The site secret: read safely, warned about when exposed, never shown."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from adapter import errors, privacy
from adapter.config import PrivacyConfig


def test_world_readable_secret_is_warned_about_without_its_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = tmp_path / "site.key"
    key.write_text("s3cr3t-value-that-is-long-enough")
    key.chmod(0o644)
    logging.getLogger("adapter").propagate = True
    with caplog.at_level(logging.WARNING, logger="adapter"):
        secret = privacy.load_secret(PrivacyConfig(hmac_key_file=key))
    assert secret == b"s3cr3t-value-that-is-long-enough"
    assert "chmod 600" in caplog.text
    assert "s3cr3t" not in caplog.text


def test_private_secret_is_not_warned_about(tmp_path: Path) -> None:
    key = tmp_path / "site.key"
    privacy.write_secret(key)
    assert not privacy.warn_if_exposed(key)


@pytest.mark.parametrize(
    ("config", "env", "message"),
    [
        (PrivacyConfig(), {}, "set hmac_key_file"),
        (PrivacyConfig(hmac_key_env="SITE_KEY"), {}, "SITE_KEY is unset or shorter"),
        (PrivacyConfig(hmac_key_env="SITE_KEY"), {"SITE_KEY": "short"}, "SITE_KEY is unset or shorter"),
    ],
)
def test_missing_or_weak_secret_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, config: PrivacyConfig, env: dict[str, str], message: str
) -> None:
    monkeypatch.delenv("SITE_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(errors.ConfigError, match=message):
        privacy.load_secret(config)


def test_hashes_are_keyed_and_stable() -> None:
    one = privacy.hash_ref(b"k" * 32, "site", "Observation/1")
    assert one == privacy.hash_ref(b"k" * 32, "site", "Observation/1")
    assert one != privacy.hash_ref(b"j" * 32, "site", "Observation/1")
    assert "Observation" not in one and one.startswith("src-")
