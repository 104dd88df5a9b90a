"""Faults between the adapter and a real FHIR server: recover exactly, or fail loudly without PHI.

Issue 9, item 1.  A real sekmet FHIR server with SMART Backend Services
holds the demo-north site; the adapter reaches it only through the fault
proxy (``faultproxy.py``).  The real CLI (``trial-adapter sync``, in
process) runs as a site's scheduler would: a pass that fails (exit 5) is
simply run again.

- Transient faults (a seeded deck: 429/500/503 with Retry-After, dropped
  and cut connections, slow and stalled answers, a redirect, truncated,
  corrupted and HTML pages, a looping next link, an expired token, a failing
  token endpoint) must leave the trial repository, the outbox, the facts,
  the stored resources and the issue list exactly as a fault-free run leaves
  them: nothing lost, nothing twice.
- Permanent faults must stop the pass with exit 5 and a message naming the
  site and the URL, with identifier values (MRNs) and patient ids redacted;
  once the fault is gone, the next pass completes with the same output.
- Nothing a run prints or logs holds a demo patient's name, MRN or birth
  date, a client assertion, an access token or the private key.

The client's waits are real but short: the site config caps Retry-After at
0.1 s and the read timeout at 1 s, so the whole file runs in well under a
minute.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
import tomlkit

from adapter import config as config_mod
from adapter import errors, paths
from adapter.cli import common
from adapter.cli import main as cli
from adapter.fhir import auth, http
from adapter.store import db, models

import faultproxy
from faultproxy import TOKEN, Fault, FaultPlan, FaultProxy, Rule
from fhirserver import FhirServer, FhirServerFactory, fhir_server_factory  # noqa: F401
from golden import issue_list, repository_records
from support import phi_strings, write_smart_key_pair, write_test_secret

pytestmark = pytest.mark.slow  # seconds each: real processes or servers (README: fast local run)

SITE = "demo-north"
SEED = 20261126
CLIENT_ID = "trial-adapter"
# Every fault kind once (the retried statuses twice, so both Retry-After forms and plain
# backoff get a turn), against the FHIR API and against the token endpoint.
DECK = (
    *(Fault(kind) for kind in faultproxy.RETRIED_KINDS),
    *(Fault(kind) for kind in faultproxy.STATUS_KINDS),
    *(Fault(kind) for kind in faultproxy.HARMLESS_KINDS),
    *(Fault(kind) for kind in ("truncated", "malformed", "html", "loop")),
    *(Fault(kind, TOKEN) for kind in faultproxy.TOKEN_KINDS),
)
# These end the pass they hit, every time; a looping next link may be caught on its way or
# only re-read a page or two.  Every other fault must be absorbed by the client's retries.
ENDS_A_PASS = sum(f.kind in ("truncated", "malformed", "html", "garbage") for f in DECK)
MAX_PASSES = len(DECK) + 1  # generous: a completed pass that deals nothing is rare


@dataclass
class FaultySite:
    """The server, the proxy in front of it and the adapter's SMART key."""

    server: FhirServer
    proxy: FaultProxy
    key_file: Path
    patient_ids: set[str]


@dataclass
class Output:
    """What a site's runs left behind, at every layer a duplicate or a loss would show."""

    records: dict[str, list[dict[str, Any]]]  # the trial repository (file sink)
    issues: list[dict[str, Any]]
    sent: list[tuple[Any, ...]]  # every outbox item ever made: (record id, operation, content hash)
    facts: list[tuple[Any, ...]]
    resources: list[tuple[Any, ...]]  # (type, id, version) of every stored source resource


@pytest.fixture(scope="module")
def site(
    fhir_server_factory: FhirServerFactory,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FaultySite]:
    """demo-north in a SMART-protected server that knows the proxy's URL as its own."""
    keys = tmp_path_factory.mktemp("fault-keys")
    private, public = write_smart_key_pair(keys)
    proxy = FaultProxy()
    server = fhir_server_factory(
        server_auth={
            "types": ["smart"],
            "smart_clients": [
                {"client_id": CLIENT_ID, "public_key_path": str(public), "scopes": "system/*.*"}
            ],
        },
        public_base_url=proxy.base_url,
    )
    proxy.start(server.root_url)
    try:
        loader = auth.SmartBackendServices(CLIENT_ID, auth.load_signing_key(private), scope="system/*.*")
        headers = loader.headers(http.FhirClient("loader", proxy.base_url))
        folder = paths.demo_data_dir() / SITE
        server.load_ndjson(folder, headers=headers)
        patients = (folder / "Patient.ndjson").read_bytes().splitlines()
        patient_ids = {str(orjson.loads(line)["id"]) for line in patients}
        yield FaultySite(server, proxy, private, patient_ids)
    finally:
        proxy.stop()


@pytest.fixture(autouse=True)
def adapter_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI points the ``adapter`` logger at its stderr; put it back for the tests after us.

    Its error line is not wrapped at 80 columns either, so a URL in it stays whole.
    """
    monkeypatch.setattr(common.err_console, "width", 10_000)
    logger = logging.getLogger("adapter")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def write_config(workdir: Path, site: FaultySite, **retry: float) -> Path:
    """The site's TOML file, as its IT team would write it: through the proxy, short waits."""
    workdir.mkdir(parents=True, exist_ok=True)
    secret = write_test_secret(workdir / "site-secret.key")
    raw = {
        "study": {"id": "NCT06507514", "mappings": str(paths.default_mappings_dir())},
        "store": {"url": f"sqlite:///{workdir / 'state.db'}"},
        "privacy": {"hmac_key_file": str(secret)},
        "sites": [
            {
                "id": SITE,
                "timezone": "America/Chicago",
                "roster": str(paths.demo_data_dir() / SITE / "roster.csv"),
                "source": {
                    "kind": "fhir-rest",
                    "base_url": site.proxy.base_url,
                    # Small pages and batches: many requests, so many places for a fault.
                    "page_size": 20,
                    "patient_batch_size": 2,
                    "timeout_seconds": 1.0,
                    "retry": {
                        "attempts": 4,
                        "backoff_seconds": 0.05,
                        "max_backoff_seconds": 0.2,
                        "retry_after_cap_seconds": 0.1,
                        "max_wait_seconds": 5.0,
                        **retry,
                    },
                    "auth": {"kind": "smart-backend", "client_id": CLIENT_ID, "key_file": str(site.key_file)},
                },
            }
        ],
        "repository": {"kind": "file", "path": str(workdir / "repository")},
    }
    path = workdir / "trial-adapter.toml"
    path.write_text(tomlkit.dumps(raw), encoding="utf-8")
    return path


def sync(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """One ``trial-adapter sync`` with JSON logs at info level; exit code, the error line, all output."""
    code = cli.main(["--log-level", "info", "--json-logs", "sync", "-c", str(config), "--quiet"])
    captured = capsys.readouterr()
    error = next((line for line in captured.err.splitlines() if line.startswith("error:")), "")
    return code, error, captured.out + captured.err


def output(config: Path) -> Output:
    loaded = config_mod.load_config(config)
    with db.open_store(loaded.store.url)() as session:

        def rows(*columns: Any) -> list[tuple[Any, ...]]:
            return sorted(tuple(row) for row in session.execute(sa.select(*columns)))

        sent = rows(models.OutboxItem.record_id, models.OutboxItem.operation, models.OutboxItem.content_hash)
        fact = models.FactRow
        facts = rows(fact.subject_id, fact.source_ref, fact.concept, fact.payload)
        resources = rows(
            models.SourceResource.resource_type,
            models.SourceResource.resource_id,
            models.SourceResource.version,
        )
    return Output(repository_records(loaded), issue_list(loaded), sent, facts, resources)


@pytest.fixture(scope="module")
def reference(site: FaultySite, tmp_path_factory: pytest.TempPathFactory) -> Output:
    """The fault-free run through the proxy: what every faulty run must end up with."""
    site.proxy.use(FaultPlan())
    config = write_config(tmp_path_factory.mktemp("fault-free"), site)
    code = cli.main(["sync", "-c", str(config), "--quiet"])
    assert code == errors.EXIT_OK
    result = output(config)
    assert sum(len(records) for records in result.records.values()) > 50
    assert len(result.sent) == len(set(result.sent)) and len(result.facts) > 500
    return result


def secrets(site: FaultySite) -> set[str]:
    """Client assertions and access tokens the proxy saw, and the private key's base64 lines."""
    key_lines = {line for line in site.key_file.read_text().splitlines() if "-----" not in line}
    return site.proxy.secrets | {line for line in key_lines if len(line) > 20}


def assert_clean(text: str, site: FaultySite, *, error: bool = False) -> None:
    """No demo patient's name, MRN or birth date, and no secret; an error line not even a patient id.

    (Log lines may carry resource references like ``Patient/<id>``, so patient
    ids are only searched for in error messages, which show URLs.)
    """
    for needle in phi_strings():
        assert needle not in text, f"PHI {needle!r} in the output"
    for secret in secrets(site):
        assert secret not in text, "a secret (client assertion, access token or key) in the output"
    if error:
        for patient_id in site.patient_ids:
            assert patient_id not in text, f"patient id {patient_id} in the error message"


def test_transient_faults_leave_the_same_repository_as_a_fault_free_run(
    site: FaultySite, reference: Output, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = site.proxy.use(FaultPlan(seed=SEED, deck=DECK, rate=0.5, token_rate=0.7))
    config = write_config(tmp_path, site)
    codes, texts = [], []
    # As the scheduler would: a failed pass is run again, and so is a completed one (the
    # next pass is due anyway) until every fault of the deck has had its turn.
    for _ in range(MAX_PASSES):
        code, error, text = sync(config, capsys)
        codes.append(code)
        texts.append(text)
        if code == errors.EXIT_OK and not plan.left:
            break
        if code != errors.EXIT_OK:
            assert code == errors.EXIT_SOURCE, text[-3000:]
            assert error.startswith(f"error: site {SITE}"), error
    trace = "\n".join(site.proxy.trace[-80:])
    assert codes[-1] == errors.EXIT_OK and not plan.left, f"passes {codes}, undealt {plan.left}\n{trace}"

    # Each fault really happened (a test that injects nothing cannot fail) ...
    injected = site.proxy.injected
    for fault in set(DECK):
        assert injected[(fault.target, fault.kind)] >= 1, f"{fault} never injected\n{trace}"
    assert sum(injected.values()) == len(DECK)
    failed = codes.count(errors.EXIT_SOURCE)
    assert ENDS_A_PASS <= failed <= ENDS_A_PASS + 1, f"{failed} passes failed: retries did not absorb"

    # ... and the adapter ended up exactly where a run without faults ends up.
    assert output(config) == reference
    for text in texts:
        assert_clean(text, site)


PATIENT_SEARCH = r"^GET /fhir/Patient\?identifier="
# Permanent faults, in the order a pass meets them: each run fails at its fault and the
# next starts from what the earlier ones committed.  (name, rule, the URL as the message
# names it, what the message says.)  The identifier searches carry MRNs in their URL.
PATIENTS = "/fhir/Patient?identifier=…(2)&_count=20"
PERMANENT = (
    ("503 beyond the retries", Rule("503", PATIENT_SEARCH), PATIENTS, "answered 503"),
    ("dropped connection", Rule("drop", PATIENT_SEARCH), PATIENTS, "closed the connection"),
    ("corrupted JSON", Rule("malformed", PATIENT_SEARCH), PATIENTS, "not valid JSON"),
    ("redirect loop", Rule("redirect", PATIENT_SEARCH), PATIENTS, "keeps redirecting"),
    (
        "looping next link",
        Rule("loop", r"^GET /fhir/Observation\?.*_offset=40"),
        "/fhir/Observation?patient=…(2)",
        "points back",
    ),
    (
        # Page 3 of the second patient batch links to the first batch's first page, read
        # earlier in the same pass (a server mixing up its paging caches).
        "next link into an earlier search",
        Rule("crossed", r"^GET /fhir/MedicationAdministration\?patient=pn-a89885c388d0.*_offset=40"),
        "/fhir/MedicationAdministration?patient=…(2)&_count=20&_offset=40",
        "points back",
    ),
    (
        "cut-off pages",
        Rule("cut", r"^GET /fhir/MedicationAdministration\?.*_offset=60"),
        "/fhir/MedicationAdministration?patient=…(2)&_count=20&_offset=60",
        "connection broke off",
    ),
    (
        "HTML instead of a Bundle",
        Rule("html", r"^GET /fhir/Procedure\?"),
        "/fhir/Procedure?patient=…(2)",
        "not valid JSON",
    ),
)


def test_a_page_that_always_fails_stops_the_pass_naming_site_and_url_then_recovers(
    site: FaultySite, reference: Output, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, site, attempts=3)
    for name, rule, url, said in PERMANENT:
        site.proxy.use(FaultPlan(rules=[rule]))
        code, error, text = sync(config, capsys)
        assert code == errors.EXIT_SOURCE, f"{name}: {text[-2000:]}"
        assert site.proxy.injected, f"{name}: the rule never matched"
        assert error.startswith(f"error: site {SITE}: "), f"{name}: {error}"
        assert f"{site.proxy.root_url}{url}" in error, f"{name}: the URL is not named: {error}"
        assert said in error, f"{name}: {error}"
        assert_clean(text, site)
        assert_clean(error, site, error=True)

    site.proxy.use(FaultPlan())
    code, _, text = sync(config, capsys)
    assert code == errors.EXIT_OK, text[-2000:]
    assert output(config) == reference


TOKEN_URL = "/auth/token"  # noqa: S105 -- a path, not a secret
DISCOVERY = "/fhir/.well-known/smart-configuration"
TOKEN_PERMANENT = (
    ("token endpoint down", Rule("503", r"^POST /auth/token"), f"POST {{root}}{TOKEN_URL}", "answered 503"),
    (
        "token endpoint answers nonsense",
        Rule("garbage", r"^POST /auth/token"),
        f"POST {{root}}{TOKEN_URL}",
        "without an access_token",
    ),
    ("discovery down", Rule("500", r"^GET /fhir/\.well-known/"), f"GET {{root}}{DISCOVERY}", "answered 500"),
)


def test_a_token_endpoint_that_always_fails_is_a_clear_auth_error_without_secrets(
    site: FaultySite, reference: Output, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, site, attempts=3)
    for name, rule, request, said in TOKEN_PERMANENT:
        site.proxy.use(FaultPlan(rules=[rule]))
        code, error, text = sync(config, capsys)
        assert code == errors.EXIT_SOURCE, f"{name}: {text[-2000:]}"
        assert site.proxy.injected, f"{name}: the rule never matched"
        assert error.startswith(f"error: site {SITE}: "), f"{name}: {error}"
        assert request.format(root=site.proxy.root_url) in error, f"{name}: the URL is not named: {error}"
        assert said in error, f"{name}: {error}"
        assert_clean(text, site)
        assert_clean(error, site, error=True)
    assert site.proxy.secrets, "the proxy should have seen client assertions to look for"

    site.proxy.use(FaultPlan())
    code, _, text = sync(config, capsys)
    assert code == errors.EXIT_OK, text[-2000:]
    assert output(config) == reference
