"""The ``fhir`` sink: protocol records into a central FHIR R4 server, by transaction.

Each batch becomes transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction),
so a subject's changes land together or not at all.  Records are written by
conditional update, ``PUT Observation?identifier=<system>|<record id>``
(https://hl7.org/fhir/R4/http.html#cond-update): the server finds the
resource by the record id or creates it, so the adapter keeps no map of
server ids, and delivering the same record twice leaves one resource with
the same content.  A record's Provenance points at it through the entry's
``urn:uuid`` fullUrl, which the server resolves inside the transaction.

Resources with nothing to match on, or whose ``identifier`` search servers
do not all offer, get fixed ids derived from their identifiers and are
written by update-as-create (``PUT Type/<id>``,
https://hl7.org/fhir/R4/http.html#upsert): a record's Provenance (R4
Provenance has no identifier), and the subject's pseudonymous Patient,
ResearchStudy and ResearchSubject (sekmet-fhir 0.1.1, our test server, has
no search parameters for the last two).  Records refer to the Patient by
that literal id, so a sink writes a subject's three resources once and
leaves them out of later Bundles.

A retraction re-sends the withdrawn record with ``status = entered-in-error``
and a Provenance with activity NULLIFY, rather than deleting it: a trial
repository keeps what it was told and when it was withdrawn, and nothing
that points at the resource breaks (docs/fhir-sink.md).

Failures: an outage (see ``adapter.sinks.base``) fails the Bundle's items
and stops; a Bundle the server rejects is sent again one subject per Bundle,
so one bad record holds back only its own subject.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import requests

from adapter.sinks import fhir_resources, transport
from adapter.sinks.base import (
    Delivery,
    DeliveryResult,
    PlannedRequest,
    Probe,
    last_change_per_record,
    subject_groups,
)
from adapter.sinks.fhir_resources import NotExpressible, Systems
from adapter.sinks.settings import FhirRepository

FHIR_JSON = "application/fhir+json"
# The read-only request that tries the credentials: servers commonly serve ``metadata`` to anyone
# (sekmet-fhir 0.1.1 and HAPI do), so it proves nothing about the token.  A count-only search
# (https://hl7.org/fhir/R4/search.html#summary) returns no resources.
AUTH_PROBE = "Patient?_summary=count"
ANCHOR_TYPES = frozenset({"Patient", "ResearchStudy", "ResearchSubject"})


@dataclass
class SubjectChanges:
    """One subject's entries, and every outbox item they settle."""

    subject_id: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    items: list[Delivery] = field(default_factory=list)


class FhirSink:
    batch_size = 2000  # items per call, so Bundles (cut at max_bundle_entries) go out full

    def __init__(self, settings: FhirRepository, session: requests.Session | None = None) -> None:
        self.base = settings.url.rstrip("/")
        self.systems = Systems(settings.system_base)
        self.max_entries = settings.max_bundle_entries
        self.timeout = settings.timeout_seconds
        self.description = f"fhir:{self.base}"
        self._settings = settings
        self._session = session
        self._anchored: set[str] = set()  # subject-level resources this sink has written

    @property
    def session(self) -> requests.Session:
        """Opened (and credentials read) on first use, so a dry run needs no token."""
        if self._session is None:
            self._session = transport.open_session(self._settings, transport.bearer_token(self._settings))
        return self._session

    # ------------------------------------------------------------- planning

    def subject_changes(self, batch: Sequence[Delivery]) -> tuple[list[SubjectChanges], list[DeliveryResult]]:
        """The batch as per-subject entries, and failures for records FHIR cannot express.

        A subject with an inexpressible record is left out whole (its other
        items get no result and wait), so its changes stay in order.
        """
        changes: list[SubjectChanges] = []
        failures: list[DeliveryResult] = []
        for group in subject_groups(batch):
            subject = SubjectChanges(group[0].subject_id, items=list(group))
            study = next((str(i.content["study"]) for i in group if i.content and i.content.get("study")), "")
            subject.entries = self._subject_entries(subject.subject_id, study) if study else []
            for item in last_change_per_record(group):
                try:
                    subject.entries += self._record_entries(item)
                except NotExpressible as exc:
                    failures.append(DeliveryResult(item.item_id, ok=False, error=str(exc)))
                    break
            else:
                changes.append(subject)
        return changes, failures

    def bundles(self, changes: Sequence[SubjectChanges]) -> list[list[SubjectChanges]]:
        """Subjects packed into Bundles of at most ``max_entries`` (one subject is never split)."""
        packed: list[list[SubjectChanges]] = []
        size = 0
        for subject in changes:
            if packed and size + len(subject.entries) <= self.max_entries:
                packed[-1].append(subject)
                size += len(subject.entries)
            else:
                packed.append([subject])
                size = len(subject.entries)
        return packed

    def transaction(self, subjects: Sequence[SubjectChanges]) -> dict[str, Any]:
        entries: list[dict[str, Any]] = []
        seen: set[str] = set()
        for subject in subjects:
            for entry in subject.entries:
                # ResearchStudy is shared by every subject: once per Bundle.
                if entry["fullUrl"] not in seen:
                    seen.add(entry["fullUrl"])
                    entries.append(entry)
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

    def preview(self, batch: Sequence[Delivery]) -> list[PlannedRequest]:
        changes, failures = self.subject_changes(batch)
        plans = [
            PlannedRequest("POST", self.base, self.transaction(bundle), _item_ids(bundle))
            for bundle in self.bundles(changes)
        ]
        plans += [PlannedRequest("NONE", "(not sent)", {"error": f.error}, (f.item_id,)) for f in failures]
        return plans

    def _subject_entries(self, subject_id: str, study: str) -> list[dict[str, Any]]:
        """The subject's Patient, ResearchStudy and ResearchSubject, unless already written by this sink."""
        systems = self.systems
        study_system, study_value = fhir_resources.study_identifier(study, systems)
        study_ref = _ref("ResearchStudy", study_system, study_value)
        patient_ref = self._patient_ref(subject_id)
        subject_ref = _ref("ResearchSubject", systems.subject_id, subject_id)
        resources = {
            study_ref: fhir_resources.research_study(study, systems),
            patient_ref: fhir_resources.patient(subject_id, systems),
            subject_ref: fhir_resources.research_subject(subject_id, study_ref, patient_ref, systems),
        }
        return [self._put(ref, resource) for ref, resource in resources.items() if ref not in self._anchored]

    def _record_entries(self, item: Delivery) -> list[dict[str, Any]]:
        record = item.content
        if record is None:
            raise NotExpressible(
                f"retraction of {item.record_type} {item.record_id} came without the withdrawn record"
            )
        retracted = item.operation == "retract"
        resource_type = fhir_resources.resource_type_of(item.record_type)
        system = self.systems.record_id
        url = fhir_resources.full_url(resource_type, system, item.record_id)
        resource = fhir_resources.record_resource(
            record, self.systems, self._patient_ref(item.subject_id), retracted=retracted
        )
        recorded = item.enqueued_at or dt.datetime.now(dt.UTC)
        provenance = fhir_resources.provenance(record, url, self.systems, recorded, retracted=retracted)
        return [
            {
                "fullUrl": url,
                "resource": resource,
                "request": {
                    "method": "PUT",
                    "url": f"{resource_type}?{fhir_resources.search_token(system, item.record_id)}",
                },
            },
            self._put(f"Provenance/{provenance['id']}", provenance),
        ]

    def _put(self, ref: str, resource: dict[str, Any]) -> dict[str, Any]:
        """An update-as-create entry for a resource with a fixed id (https://hl7.org/fhir/R4/http.html#upsert)."""
        resource_type, resource_id = ref.split("/")
        return {
            "fullUrl": f"{self.base}/{ref}",
            "resource": {"resourceType": resource_type, "id": resource_id, **resource},
            "request": {"method": "PUT", "url": ref},
        }

    def _patient_ref(self, subject_id: str) -> str:
        return _ref("Patient", self.systems.subject_id, subject_id)

    # ------------------------------------------------------------- delivering

    def deliver(self, batch: Sequence[Delivery]) -> list[DeliveryResult]:
        changes, results = self.subject_changes(batch)
        for bundle in self.bundles(changes):
            failure = self._post(bundle)
            if failure is None:
                results += self._settled(bundle)
                continue
            if failure.outage or len(bundle) == 1:
                results += _failed(bundle, failure)
                if failure.outage:
                    return results
                continue
            # Rejected: find the subject(s) the server objects to, one Bundle each.
            for subject in bundle:
                alone = self._post([subject])
                results += self._settled([subject]) if alone is None else _failed([subject], alone)
                if alone is not None and alone.outage:
                    return results
        return results

    # ------------------------------------------------------------- checking

    def probe(self) -> Probe:
        """``GET [base]/metadata`` (a FHIR R4 server?), then a count-only search (credentials taken?)."""
        what = f"GET {self.base}/metadata"
        outcome = transport.send(
            self.session, "GET", f"{self.base}/metadata", timeout=self.timeout, headers={"Accept": FHIR_JSON}
        )
        if isinstance(outcome, transport.Failure):
            return Probe(False, outcome.error)
        if not outcome.ok:
            return Probe(False, transport.failure_of(outcome, what).error)
        try:
            statement = orjson.loads(outcome.content)
        except orjson.JSONDecodeError:
            statement = None
        if not isinstance(statement, dict) or statement.get("resourceType") != "CapabilityStatement":
            return Probe(
                False,
                f"{what}: the answer is not a CapabilityStatement; check [repository] url (the FHIR base, "
                'e.g. "https://trials.example.org/fhir")',
            )
        version = str(statement.get("fhirVersion") or "unknown")
        notes = []
        if not version.startswith("4.0"):
            notes.append(f"the server says FHIR {version}, the sink writes R4 (4.0.1)")
        if not _lists_transaction(statement):
            notes.append("its CapabilityStatement does not list the transaction interaction the sink uses")

        what = f"GET {self.base}/{AUTH_PROBE}"
        outcome = transport.send(
            self.session,
            "GET",
            f"{self.base}/{AUTH_PROBE}",
            timeout=self.timeout,
            headers={"Accept": FHIR_JSON},
        )
        if isinstance(outcome, transport.Failure):
            return Probe(False, outcome.error)
        status = outcome.status_code
        if status in transport.OUTAGE_STATUSES or status >= 500:
            return Probe(False, transport.failure_of(outcome, what).error)
        if not outcome.ok:
            notes.append(f"a count-only Patient search answered HTTP {status}, not 200")
        auth = "credentials accepted" if "Authorization" in self.session.headers else "no credentials set"
        detail = f"FHIR {version} server at {self.base}; {auth}"
        return Probe(True, "; ".join([detail, *notes]), warning=bool(notes))

    def _settled(self, subjects: Sequence[SubjectChanges]) -> list[DeliveryResult]:
        """The Bundle committed: its items arrived, and its subject-level resources need no resending."""
        for subject in subjects:
            self._anchored.update(
                e["request"]["url"] for e in subject.entries if e["resource"]["resourceType"] in ANCHOR_TYPES
            )
        return [DeliveryResult(item.item_id, ok=True) for subject in subjects for item in subject.items]

    def _post(self, subjects: Sequence[SubjectChanges]) -> transport.Failure | None:
        bundle = self.transaction(subjects)
        outcome = transport.send(
            self.session,
            "POST",
            self.base,
            timeout=self.timeout,
            data=orjson.dumps(bundle),
            headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON},
        )
        what = f"transaction of {len(bundle['entry'])} entries to {self.base}"
        if isinstance(outcome, transport.Failure):
            return outcome
        if not outcome.ok:
            return transport.failure_of(outcome, what)
        return _check_response(outcome, len(bundle["entry"]), what)


def _ref(resource_type: str, system: str, value: str) -> str:
    """``Type/<fixed id>``: a literal reference that needs no search to resolve."""
    return f"{resource_type}/{fhir_resources.fixed_id(resource_type, system, value)}"


def _check_response(response: requests.Response, sent: int, what: str) -> transport.Failure | None:
    """A transaction answers with a transaction-response Bundle, one entry per request entry."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return transport.Failure(f"{what}: the server's answer is not JSON", outage=False)
    if not isinstance(body, dict) or body.get("type") != "transaction-response":
        return transport.Failure(
            f"{what}: the server did not answer with a transaction-response", outage=False
        )
    statuses = [str((entry.get("response") or {}).get("status", "")) for entry in body.get("entry") or []]
    if len(statuses) != sent or not all(status.startswith("2") for status in statuses):
        return transport.Failure(f"{what}: unexpected entry statuses {statuses[:5]}", outage=False)
    return None


def _lists_transaction(statement: dict[str, Any]) -> bool:
    """Whether a CapabilityStatement's ``rest`` lists the system-level ``transaction`` interaction."""
    for rest in statement.get("rest") or []:
        if isinstance(rest, dict):
            for interaction in rest.get("interaction") or []:
                if isinstance(interaction, dict) and interaction.get("code") == "transaction":
                    return True
    return False


def _item_ids(subjects: Sequence[SubjectChanges]) -> tuple[int, ...]:
    return tuple(item.item_id for subject in subjects for item in subject.items)


def _failed(subjects: Sequence[SubjectChanges], failure: transport.Failure) -> list[DeliveryResult]:
    return [
        DeliveryResult(item.item_id, ok=False, error=failure.error, outage=failure.outage)
        for subject in subjects
        for item in subject.items
    ]
