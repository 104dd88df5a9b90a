"""Can the adapter read this site?  The checks behind ``trial-adapter check`` for server sources.

It reads what the server says about itself: the CapabilityStatement at
``/metadata`` (https://hl7.org/fhir/R4/capabilitystatement.html: FHIR
version, resource types, search parameters, operations) and, for SMART
sites, ``.well-known/smart-configuration``
(https://hl7.org/fhir/smart-app-launch/conformance.html); then it tries the
configured auth with one small search, and for a ``fhir-rest`` site probes
how the server really answers (``adapter.fhir.probe``).  Each finding is a
row, ok or not, and a row that is not ok says what to change.  Nothing is
written anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapter import errors
from adapter import roster as roster_mod
from adapter.fhir import auth, connect, http, probe
from adapter.fhir import settings as fhir_settings
from adapter.fhir.check_row import CheckRow
from adapter.fhir.wanted import Wanted

# The searches the REST source runs, per resource type (rest.py).
NEEDED_SEARCH_PARAMS = {
    "Patient": ("identifier",),
    "Observation": ("patient", "code"),
    "MedicationAdministration": ("patient",),
    "Procedure": ("patient",),
}


def check_server(
    site: str,
    server: fhir_settings.FhirServerSettings,
    *,
    client: http.FhirClient | None = None,
    roster: roster_mod.Roster | None = None,
    wanted: Wanted | None = None,
) -> list[CheckRow]:
    """Every check for one site's FHIR server, in the order a person would fix them.

    With the site's roster and wanted codes, a ``fhir-rest`` site whose auth row is
    ok also gets the behaviour probes (``adapter.fhir.probe``): small real
    searches that show how the server answers the REST source's searches.
    """
    rows: list[CheckRow] = []
    try:
        client = client or connect.client_for(site, server)
    except errors.AdapterError as exc:
        return [CheckRow("credentials", False, str(exc))]
    if server.tls.verify is False:
        rows.append(CheckRow("TLS", True, "certificate verification is OFF; set tls.verify = true", True))
    statement = _fetch(rows, "server /metadata", lambda: client.get_json("metadata", authenticate=False)[0])
    if statement is None:
        return rows
    rows.extend(capability_rows(statement, server))
    if isinstance(server.auth, fhir_settings.SmartBackendAuth):
        smart = _fetch(rows, "SMART configuration", lambda: auth.smart_configuration(client))
        if smart is not None:
            rows.append(smart_row(smart))
    auth_row = _try_auth(client, server)
    rows.append(auth_row)
    if auth_row.ok and isinstance(server, fhir_settings.RestSource):
        if roster is not None and wanted is not None:
            rows.extend(probe.probe_server(site, server, client, roster=roster, wanted=wanted))
    return rows


def capability_rows(statement: dict[str, Any], server: fhir_settings.FhirServerSettings) -> list[CheckRow]:
    """Rows for FHIR version, resource types and search parameters (and $export for Bulk sites)."""
    rows = []
    if statement.get("resourceType") != "CapabilityStatement":
        return [CheckRow("server /metadata", False, "not a CapabilityStatement; check base_url")]
    version = str(statement.get("fhirVersion", "unknown"))
    software = statement.get("software")
    name = " ".join(
        str(software[k]) for k in ("name", "version") if isinstance(software, dict) and software.get(k)
    )
    if version.startswith("4.0"):
        rows.append(CheckRow("FHIR version", True, f"R4 {version}" + (f" ({name})" if name else "")))
    else:
        rows.append(CheckRow("FHIR version", False, f"{version}: the adapter reads FHIR R4 (4.0.x) servers"))
    resources = _resources(statement)
    category = isinstance(server, fhir_settings.RestSource) and bool(server.observation_category)
    for resource_type, needed in NEEDED_SEARCH_PARAMS.items():
        declared = resources.get(resource_type)
        if declared is None:
            rows.append(
                CheckRow(resource_type, False, "not offered by the server; ask the site to expose it")
            )
            continue
        params = {p.get("name") for p in declared.get("searchParam", []) if isinstance(p, dict)}
        wanted = (*needed, "category") if category and resource_type == "Observation" else needed
        missing = [p for p in wanted if p not in params]
        if missing and isinstance(server, fhir_settings.RestSource):
            rows.append(
                CheckRow(
                    resource_type,
                    False,
                    f"search by {', '.join(missing)} not declared; the REST source needs it "
                    '(or use kind = "fhir-bulk")',
                )
            )
            continue
        note = "" if "_lastUpdated" in params else "; _lastUpdated not declared (common, usually works)"
        rows.append(CheckRow(resource_type, True, f"searchable by {', '.join(wanted)}{note}"))
    if isinstance(server, fhir_settings.BulkSource):
        rows.append(_export_row(statement, resources, server))
    return rows


def smart_row(config: dict[str, Any]) -> CheckRow:
    """Does the SMART configuration offer what Backend Services needs?"""
    endpoint = config.get("token_endpoint")
    if not isinstance(endpoint, str):
        return CheckRow("SMART configuration", False, "no token_endpoint; set auth.token_url")
    methods = config.get("token_endpoint_auth_methods_supported") or []
    algs = config.get("token_endpoint_auth_signing_alg_values_supported") or []
    notes = []
    if methods and "private_key_jwt" not in methods:
        notes.append("private_key_jwt not listed among the token endpoint's auth methods")
    if algs and not {"RS384", "ES384"} & set(algs):
        notes.append("neither RS384 nor ES384 listed as signing algorithms")
    detail = f"token endpoint {endpoint}" + (f" ({'; '.join(notes)})" if notes else "")
    return CheckRow("SMART configuration", True, detail)


def _export_row(
    statement: dict[str, Any], resources: dict[str, dict[str, Any]], server: fhir_settings.BulkSource
) -> CheckRow:
    level = "Group" if server.group_id else "Patient"
    operations = [
        op.get("name")
        for op in [
            *resources.get(level, {}).get("operation", []),
            *[
                o
                for rest in statement.get("rest", [])
                if isinstance(rest, dict)
                for o in rest.get("operation", [])
            ],
        ]
        if isinstance(op, dict)
    ]
    if "export" in operations or "$export" in operations:
        return CheckRow("Bulk Data export", True, f"{level}/$export offered")
    return CheckRow(
        "Bulk Data export",
        False,
        f'{level}/$export not declared in the CapabilityStatement; ask the site, or use kind = "fhir-rest"',
    )


def _try_auth(client: http.FhirClient, server: fhir_settings.FhirServerSettings) -> CheckRow:
    """One tiny authenticated search: proves credentials, scopes and the network path."""
    kind = server.auth.kind
    try:
        client.request("GET", "Patient", params={"_id": "trial-adapter-check", "_count": "1"})
    except errors.AdapterError as exc:
        return CheckRow(f"auth ({kind})", False, str(exc))
    return CheckRow(f"auth ({kind})", True, "a search with these credentials was answered")


def _fetch(rows: list[CheckRow], item: str, fetch: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return fetch()
    except errors.AdapterError as exc:
        rows.append(CheckRow(item, False, str(exc)))
        return None


def _resources(statement: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for rest in statement.get("rest", []) or []:
        if isinstance(rest, dict) and rest.get("mode", "server") == "server":
            for resource in rest.get("resource", []) or []:
                if isinstance(resource, dict) and isinstance(resource.get("type"), str):
                    found[resource["type"]] = resource
    return found
