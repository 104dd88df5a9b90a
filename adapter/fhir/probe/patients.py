"""The roster probes: finding roster patients, and whether OR-lists of identifiers and patients hold.

The REST source searches patients by identifier and their data by patient,
many per search (``patient_batch_size``).  A server that answers only part
of an OR-list loses patients or their data; one that returns patients or
resources nobody asked for makes the sync stop.  Both are compared here with
one search per identifier or patient; ``patient_batch_size = 1`` adapts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapter import errors
from adapter.fhir import search_terms, verify
from adapter.fhir.check_row import CheckRow
from adapter.fhir.probe.base import (
    ITEM_IDENTIFIERS,
    ITEM_PATIENTS,
    ITEM_ROSTER,
    PROBE_COUNT,
    PROBE_PAGES,
    PROBE_PATIENTS,
    Data,
    DataSearch,
    Prober,
)


def find_patients(prober: Prober) -> CheckRow | None:
    """The first roster patients, one identifier per search (the baseline of probe 1)."""
    for entry in prober.entries:
        if len(prober.found) >= PROBE_PATIENTS:
            break
        token = search_terms.identifier_token(entry)
        params = {"identifier": token, "_count": "10"}
        answer = prober.search("Patient", params)
        if answer.refused is not None:
            return CheckRow(
                ITEM_ROSTER,
                False,
                f"a Patient search by one identifier was refused ({answer.refused}); the REST source "
                "finds roster patients this way, so a sync cannot start; check the identifier search "
                "with the site",
            )
        fits = verify.Expected.of_search("Patient", params)
        ids = []
        for resource in answer.resources:
            if _fits(fits, resource):
                ids.append(str(resource.get("id")))
            else:
                prober.unasked_patients += 1
        prober.sensitive.update(ids)
        if ids:
            prober.found.append((token, sorted(ids)[0]))
    tried = len(prober.entries)
    if not prober.found:
        return CheckRow(
            ITEM_ROSTER,
            True,
            f"none of the first {tried} roster identifiers was found on the server, so the behaviour "
            "probes that need patients did not run; check the roster's identifier_system against "
            "the server's Patient identifiers",
            True,
        )
    if len(prober.found) < min(2, prober.roster_size):
        return CheckRow(
            ITEM_ROSTER,
            True,
            f"only {len(prober.found)} of the first {tried} roster identifiers found on the server; the "
            "OR-list probes need two patients",
            True,
        )
    return None


def identifier_or_list(prober: Prober) -> CheckRow:
    batch = prober.server.patient_batch_size
    if len(prober.found) < 2:
        return CheckRow(ITEM_IDENTIFIERS, True, "not tested: fewer than two roster patients found", True)
    params = {"identifier": ",".join(token for token, _ in prober.found), "_count": "10"}
    answer = prober.collect("Patient", params, PROBE_PAGES)
    asked = len(prober.found)
    search = f"Patient?identifier with an OR-list of {asked} identifiers"
    if answer.refused is not None:
        return _or_quirk(
            prober,
            ITEM_IDENTIFIERS,
            f"{search} was refused ({answer.refused})",
            "the sync's Patient search would fail",
            "searches one identifier at a time",
        )
    fits = verify.Expected.of_search("Patient", params)
    got = {str(r.get("id")) for r in answer.resources if _fits(fits, r)}
    unasked = sum(1 for r in answer.resources if not _fits(fits, r)) + prober.unasked_patients
    expected = {patient for _, patient in prober.found}
    missing = expected - got
    extra_note = (
        f"; the server returns patients that were not asked for ({unasked} in the answers carried "
        "none of the searched identifiers; the adapter drops them)"
        if unasked
        else ""
    )
    if missing:
        return _or_quirk(
            prober,
            ITEM_IDENTIFIERS,
            f"the server answers only part of an OR-list: {search} found {asked - len(missing)} of "
            f"the {asked} patients one search per identifier finds{extra_note}",
            "roster patients would be missed and their data never read",
            "searches one identifier at a time",
        )
    found = f"{search} found the same {asked} patients as one search per identifier"
    note = "; patient_batch_size = 1 is not needed for this" if batch == 1 else ""
    return CheckRow(ITEM_IDENTIFIERS, True, found + extra_note + note, bool(unasked))


def patient_or_list(prober: Prober) -> CheckRow:
    patient_ids = [patient for _, patient in prober.found]
    data = _find_data(prober, patient_ids)
    if isinstance(data, CheckRow):
        return data
    prober.data = data
    search = data.search
    ignoring = {
        kind
        for patient, single in data.singles.items()
        for kind in prober.count_misfits(search.resource_type, search.params([patient], PROBE_COUNT), single)
    }
    if "unasked_patient" in ignoring:
        return CheckRow(
            ITEM_PATIENTS,
            False,
            f"a one-patient search ({search.described}) returned other patients' resources: the server "
            "ignores the patient parameter; the adapter stops such searches as a server fault and no "
            "setting adapts to it; ask the site, or use a fhir-bulk source with a Group",
        )
    if len(patient_ids) < 2:
        return CheckRow(ITEM_PATIENTS, True, "not tested: fewer than two roster patients found", True)
    # The patient with the most data last: a server answering for the first patient only shows.
    order = sorted(patient_ids, key=lambda p: (len(data.singles[p].ids), p))
    params = search.params(order, PROBE_COUNT * len(order))
    answer = prober.collect(search.resource_type, params, PROBE_PAGES + 1)
    what = f"{search.resource_type}?patient with an OR-list of {len(order)} patients"
    if answer.refused is not None:
        return _or_quirk(
            prober,
            ITEM_PATIENTS,
            f"{what} was refused ({answer.refused})",
            "the sync's searches would fail",
            "searches one patient at a time",
        )
    foreign = prober.count_misfits(search.resource_type, params, answer, plain=False)["unasked_patient"]
    if foreign:
        return _or_quirk(
            prober,
            ITEM_PATIENTS,
            f"{what} returned {foreign} resource(s) of patients that were not asked for",
            "the adapter stops such a search as a server fault, so no data would be read",
            "searches one patient at a time",
        )
    expected = set().union(*(single.ids for single in data.singles.values()))
    if answer.complete:
        missing, counted = len(expected - answer.ids), f"{len(expected)} resources"
    elif answer.total is not None and all(s.total is not None for s in data.singles.values()):
        wanted = sum(s.total or 0 for s in data.singles.values())
        missing, counted = max(0, wanted - answer.total), f"{wanted} resources (by Bundle.total)"
    else:
        return CheckRow(
            ITEM_PATIENTS,
            True,
            f"not decided: {what} has more results than a cheap probe reads, and no totals to compare",
            True,
        )
    if missing:
        return _or_quirk(
            prober,
            ITEM_PATIENTS,
            f"the server answers only part of an OR-list of patients: {what} lacks {missing} of the "
            f"{counted} one search per patient finds",
            "the sync would lose those patients' data",
            "searches one patient at a time",
        )
    data.or_list_ok = True
    found = f"{what} answered the same {counted} as one search per patient"
    note = (
        "; patient_batch_size = 1 is not needed (up to 200 patients per search save requests)"
        if prober.server.patient_batch_size == 1
        else ""
    )
    return CheckRow(ITEM_PATIENTS, True, found + note)


def _or_quirk(prober: Prober, item: str, found: str, consequence: str, adapted: str) -> CheckRow:
    if prober.server.patient_batch_size == 1:
        return CheckRow(item, True, f"{found}; patient_batch_size = 1 already {adapted}")
    return CheckRow(item, False, f"{found}; {consequence}; set patient_batch_size = 1")


def _find_data(prober: Prober, patient_ids: Sequence[str]) -> Data | CheckRow:
    """The first of the sync's searches that finds data for a probed patient, one search per patient."""
    configured = prober.server.observation_category
    candidates = []
    if prober.codes and (prober.category_required is False or (prober.category_required and configured)):
        filters = [("code", ",".join(prober.codes))]
        if configured:
            filters.append(("category", ",".join(configured)))
        candidates.append(DataSearch("Observation", tuple(filters)))
    candidates += [DataSearch("MedicationAdministration"), DataSearch("Procedure")]
    for search in candidates:
        singles = {}
        for patient in patient_ids:
            single = prober.collect(search.resource_type, search.params([patient], PROBE_COUNT), PROBE_PAGES)
            if single.refused is not None:
                return CheckRow(
                    ITEM_PATIENTS,
                    False,
                    f"a one-patient search ({search.described}) was refused ({single.refused}); the "
                    "sync's searches would fail; ask the site which search parameters it takes",
                )
            singles[patient] = single
        if any(single.resources for single in singles.values()):
            return Data(search, singles)
    return CheckRow(
        ITEM_PATIENTS,
        True,
        f"not tested: the first {len(patient_ids)} roster patients found have none of the catalog's "
        "Observations, no MedicationAdministrations and no Procedures",
        True,
    )


def _fits(expected: verify.Expected, resource: dict[str, Any]) -> bool:
    if not verify.asked_patient(expected, resource):
        return False
    try:
        verify.check(expected, resource, "probe")
    except errors.ServerFault:
        return False
    return True
