"""Site config -> a ready ``FhirClient``: auth scheme, TLS (CA bundle, mutual TLS), retries."""

from __future__ import annotations

from adapter.fhir import auth, http
from adapter.fhir import settings as fhir_settings


def client_for(site: str, server: fhir_settings.FhirServerSettings) -> http.FhirClient:
    """A client for one site's server; reads the secrets the config names (never logs them)."""
    tls = server.tls
    verify: bool | str = str(tls.ca_bundle) if tls.verify and tls.ca_bundle is not None else tls.verify
    cert: str | tuple[str, str] | None = None
    if tls.client_cert is not None:
        cert = (str(tls.client_cert), str(tls.client_key)) if tls.client_key else str(tls.client_cert)
    retry = server.retry
    return http.FhirClient(
        site,
        server.base_url,
        auth=auth.make_authorizer(server.auth),
        timeout=server.timeout_seconds,
        verify=verify,
        cert=cert,
        retry=http.RetryPolicy(
            attempts=retry.attempts,
            backoff=retry.backoff_seconds,
            max_backoff=retry.max_backoff_seconds,
            retry_after_cap=retry.retry_after_cap_seconds,
            max_wait=retry.max_wait_seconds,
        ),
        max_body_bytes=server.max_response_bytes,
        max_resource_bytes=server.max_resource_bytes,
    )
