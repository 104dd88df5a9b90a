"""The [repository] tables of the network sinks: parsed, paths resolved, mistakes explained."""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from adapter import config as config_mod
from adapter import errors
from adapter.net.settings import BearerAuth
from adapter.sinks import factory, settings
from adapter.sinks.fhir import FhirSink
from adapter.sinks.file import FileSink
from adapter.sinks.http import HttpSink
from adapter.sinks.redcap import RedcapSink

from support import minimal_config

REDCAP_RECORDS = {
    t: {"skip": True}
    for t in ("EligibilityAssessment", "TreatmentCycle", "StemCellCollection", "Reconstitution", "MrdResult")
} | {"Transplant": {"fields": {"day0": "hsct_day0"}}}


def load(repository: dict[str, Any], base: Path) -> config_mod.Config:
    return config_mod.config_from_dict(minimal_config(repository=repository), base_dir=base)


def test_each_kind_makes_its_sink_and_relative_paths_follow_the_config(tmp_path: Path) -> None:
    http = load(
        {
            "kind": "http",
            "url": "https://trials.example.org/api",
            "auth": {"kind": "bearer", "token_file": "secrets/token"},
            "tls": {
                "client_cert": "tls/client.pem",
                "client_key": "tls/client.key",
                "ca_bundle": "tls/ca.pem",
            },
        },
        tmp_path,
    ).repository
    assert isinstance(http, settings.HttpRepository)
    assert isinstance(http.auth, BearerAuth) and http.auth.token_file == tmp_path / "secrets/token"
    assert (
        http.tls.client_cert == tmp_path / "tls/client.pem" and http.tls.ca_bundle == tmp_path / "tls/ca.pem"
    )
    assert isinstance(factory.make_sink(http), HttpSink)

    fhir = load({"kind": "fhir", "url": "https://repo.example.org/fhir"}, tmp_path).repository
    assert (
        isinstance(factory.make_sink(fhir), FhirSink)
        and factory.describe(fhir) == "https://repo.example.org/fhir"
    )

    redcap = load(
        {
            "kind": "redcap",
            "url": "https://redcap.example.org/api/",
            "token_file": "rc.token",
            "records": REDCAP_RECORDS,
        },
        tmp_path,
    ).repository
    assert isinstance(redcap, settings.RedcapRepository) and redcap.token_file == tmp_path / "rc.token"
    assert isinstance(factory.make_sink(redcap), RedcapSink)

    file = load({"kind": "file", "path": "out"}, tmp_path).repository
    assert isinstance(factory.make_sink(file), FileSink) and factory.describe(file) == str(tmp_path / "out")


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        ({"kind": "ftp", "url": "x"}, ["kind 'ftp' is not supported", "'http'", "'fhir'", "'redcap'"]),
        ({"kind": "fhir"}, ["repository.url: is required", "base URL"]),
        ({"kind": "http", "url": "not a url"}, ["repository.url", "base URL"]),
        (
            {
                "kind": "http",
                "url": "https://x.org",
                "auth": {"kind": "bearer", "token_env": "A", "token_file": "b"},
            },
            ["set exactly one of token_env"],
        ),
        (
            {"kind": "fhir", "url": "https://x.org", "max_bundle_entries": 1},
            ["max_bundle_entries", "10 to 10000"],
        ),
        (
            {"kind": "redcap", "url": "https://x.org/api/", "records": REDCAP_RECORDS},
            ["exactly one of token_env"],
        ),
        (
            {"kind": "redcap", "url": "https://x.org/api/", "token_env": "T", "records": {}},
            ["no table for", "skip = true"],
        ),
        ({"kind": "http", "url": "https://x.org", "token": "s3cret"}, ["token: is not a known setting"]),
        (
            {"kind": "fhir", "url": "https://x.org", "tls": {"verify": False, "ca_bundle": "ca.pem"}},
            ["repository.tls: ca_bundle is set but verify = false", "remove verify = false"],
        ),
    ],
)
def test_mistakes_name_the_key_and_the_fix(
    repository: dict[str, Any], expected: list[str], tmp_path: Path
) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        load(repository, tmp_path)
    for fragment in expected:
        assert fragment in str(caught.value), str(caught.value)


def test_the_commented_repository_examples_in_config_example_toml_are_valid(tmp_path: Path) -> None:
    """Each "# --- Or ..." block, uncommented, is a config that loads: the documentation stays true."""
    text = (Path(__file__).resolve().parents[2] / "config.example.toml").read_text()
    head, rest = text.split("[repository]\n# Where", 1)
    kinds = []
    for block in re.split(r"\n# --- ", rest)[1:]:
        commented = itertools.takewhile(lambda line: line.startswith("#"), block.splitlines()[1:])
        settings_lines = [line[2:] for line in commented if re.match(r"^# (\[|[\w\"].*? = )", line)]
        raw = tomllib.loads(head + "\n".join(settings_lines))
        kinds.append(config_mod.config_from_dict(raw, base_dir=tmp_path).repository.kind)
    assert kinds == ["http", "fhir", "redcap"]
    shifted = tomllib.loads(text.replace("# date_shift_days = 30", "date_shift_days = 30"))
    assert config_mod.config_from_dict(shifted, base_dir=tmp_path).privacy.date_shift_days == 30
