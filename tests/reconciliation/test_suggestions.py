"""Suggestions for unknown_code issues, from the results the site stored under the code.

The demo-east export gets local codes a data manager would meet: ALT as
"GPT" in U/L, AST in two units, a drug level an Observation cannot carry;
the demo's own sodium (``lis|0099``) names no protocol concept.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapter import config as config_mod
from adapter import errors
from adapter.reconciliation import actions, sent_under_code, site_files, suggestions
from adapter.service import job
from adapter.store import db, models

from local_results import GPT_KEY, LIS, SODIUM_KEY, add_gpt, add_results
from support import demo_sandbox, phi_strings

AST_KEY = f"demo-east|unknown_code|code:{LIS}|0083"
DRUG_LEVEL_KEY = f"demo-east|unknown_code|code:{LIS}|0300"


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> config_mod.Config:
    root = tmp_path_factory.mktemp("suggestions")
    config = demo_sandbox(root)
    east = root / "data" / "demo-east"
    add_gpt(east)
    add_results(east, "0083", "谷草转氨酶", [(20, "U/L"), (31, "U/L"), (44, "U/L"), (0.5, "ukat/L")])
    add_results(east, "0300", "Blinatumomab level", [(500, None)])
    job.run_once(config, config.sites)
    return config


@pytest.fixture
def session(synced: config_mod.Config) -> Session:
    return db.open_store(synced.store.url)()


def rows(session: Session, *keys: str) -> list[models.IssueRow]:
    found = [session.get(models.IssueRow, key) for key in keys]
    assert all(row is not None for row in found), "the sync raised every issue the test needs"
    return [row for row in found if row is not None]


def test_a_local_alt_code_gets_alt_with_the_evidence_of_its_unit_and_values(
    synced: config_mod.Config, session: Session
) -> None:
    found = suggestions.suggestions_for(synced, session, rows(session, GPT_KEY))[GPT_KEY]
    best = found[0]
    assert (best.concept, best.label) == ("alt", "ALT")
    assert best.score >= 0.9 and best.percent == round(best.score * 100)
    assert best.evidence == (
        "name 'GPT' is a known abbreviation of ALT",
        "unit U/L fits ALT's canonical unit U/L",
        "4 of 4 values fall inside ALT's plausible range 1–20000 U/L",
    )
    assert best.as_item() == {"concept": "alt", "score": best.score, "evidence": list(best.evidence)}


def test_sodium_names_no_protocol_concept_and_other_issues_get_none(
    synced: config_mod.Config, session: Session
) -> None:
    other = session.scalars(
        sa.select(models.IssueRow).where(models.IssueRow.kind != "unknown_code").limit(5)
    ).all()
    assert other
    found = suggestions.suggestions_for(synced, session, [*rows(session, SODIUM_KEY), *other])
    assert found == {SODIUM_KEY: []}  # asked and none fits; other kinds are not asked at all


def test_a_concept_the_resource_type_cannot_carry_is_never_suggested(
    synced: config_mod.Config, session: Session
) -> None:
    """ "Blinatumomab level" names the study drug, but a drug on an Observation is wrong_resource_type."""
    assert suggestions.suggestions_for(synced, session, rows(session, DRUG_LEVEL_KEY)) == {DRUG_LEVEL_KEY: []}


def test_results_in_several_units_weigh_the_most_common_and_say_so(
    synced: config_mod.Config, session: Session
) -> None:
    best = suggestions.suggestions_for(synced, session, rows(session, AST_KEY))[AST_KEY][0]
    assert best.concept == "ast"
    assert "3 of 3 values fall inside AST's plausible range 1–20000 U/L" in best.evidence
    assert "units sent: U/L × 3, ukat/L × 1; the values in U/L were weighed" in best.evidence


def test_at_most_the_first_sources_are_read_and_the_evidence_says_so(
    synced: config_mod.Config, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sent_under_code, "SOURCES_READ", 2)
    best = suggestions.suggestions_for(synced, session, rows(session, GPT_KEY))[GPT_KEY][0]
    assert "2 of 2 values fall inside ALT's plausible range 1–20000 U/L" in best.evidence
    assert best.evidence[-1] == "read from the first 2 of 4 results under this code"


def test_unreadable_stored_bodies_are_skipped_and_the_issue_display_still_counts(
    synced: config_mod.Config, session: Session
) -> None:
    source = models.SourceResource
    session.execute(
        sa.update(source)
        .where(source.site == "demo-east", source.resource_id.in_(["obs-0082-0", "obs-0082-1"]))
        .values(raw="{not json")
    )
    session.execute(
        sa.update(source)
        .where(source.site == "demo-east", source.resource_id == "obs-0082-2")
        .values(raw="[1]")
    )
    session.execute(
        sa.update(source)
        .where(source.site == "demo-east", source.resource_id == "obs-0082-3")
        .values(raw='{"valueQuantity": {"value": "41", "unit": 7}, "code": {"coding": "x", "text": 3}}')
    )
    try:
        best = suggestions.suggestions_for(synced, session, rows(session, GPT_KEY))[GPT_KEY][0]
    finally:
        session.rollback()
    assert best.concept == "alt"  # from the display the issue's detail quotes
    assert best.evidence == ("name 'GPT' is a known abbreviation of ALT",)  # no unit, no value read


def test_the_catalog_is_loaded_once_per_site_and_a_broken_one_suggests_nothing(
    synced: config_mod.Config, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    real = site_files.catalog

    def counted(config: config_mod.Config, site: str) -> object:
        loads.append(site)
        return real(config, site)

    monkeypatch.setattr(site_files, "catalog", counted)
    found = suggestions.suggestions_for(synced, session, rows(session, GPT_KEY, AST_KEY, SODIUM_KEY))
    assert set(found) == {GPT_KEY, AST_KEY, SODIUM_KEY} and loads == ["demo-east"]

    def broken(config: config_mod.Config, site: str) -> object:
        raise errors.MappingError("sites/demo-east.toml: [codes] is not a table")

    monkeypatch.setattr(site_files, "catalog", broken)
    assert suggestions.suggestions_for(synced, session, rows(session, GPT_KEY)) == {}
    with pytest.raises(errors.MappingError):
        suggestions.choose(synced, session, GPT_KEY)


def test_evidence_names_no_patient_subject_or_resource(synced: config_mod.Config, session: Session) -> None:
    every = session.scalars(sa.select(models.IssueRow)).all()
    found = suggestions.suggestions_for(synced, session, every)
    text = " ".join(sentence for listed in found.values() for s in listed for sentence in s.evidence)
    assert "ALT" in text
    subjects = set(session.scalars(sa.select(models.PatientLink.subject_id)).all()) - {None}
    phi = phi_strings(Path(synced.sites[0].roster).parent.parent)
    assert subjects and phi, "the test looks for something"
    forbidden = phi | subjects | {"Patient/", "Observation/"}
    assert not [needle for needle in forbidden if needle and needle in text]


def test_choosing_a_suggestion_refuses_what_is_not_one(synced: config_mod.Config, session: Session) -> None:
    chosen = suggestions.choose(synced, session, GPT_KEY)
    assert (chosen.site, chosen.code, chosen.suggestion.concept) == ("demo-east", f"{LIS}|0082", "alt")
    assert suggestions.choose(synced, session, GPT_KEY, "alt") == chosen

    refusals = {
        "not among them": (GPT_KEY, "creatinine"),
        "none fits": (SODIUM_KEY, None),
        "no such issue": ("demo-east|unknown_code|code:nope", None),
    }
    messages = {}
    for name, (key, concept) in refusals.items():
        with pytest.raises(actions.FixRefused) as refused:
            suggestions.choose(synced, session, key, concept)
        messages[name] = str(refused.value)
    assert "'creatinine' is not among the suggestions" in messages["not among them"]
    assert "trial-adapter map code" in messages["not among them"]
    assert "no concept is suggested" in messages["none fits"] and "map code" in messages["none fits"]
    assert "no issue with key" in messages["no such issue"]

    implausible = sa.select(models.IssueRow).where(models.IssueRow.kind == "implausible_value")
    other = session.scalars(implausible).first()
    assert other is not None
    with pytest.raises(actions.FixRefused, match="only an open unknown_code issue"):
        suggestions.choose(synced, session, other.key)
