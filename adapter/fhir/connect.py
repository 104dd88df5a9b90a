"""Site config -> a ready ``FhirClient``: auth scheme, TLS (CA bundle, mutual TLS), retries."""

from __future__ import annotations

from adapter.fhir import auth, http
from adapter.fhir import settings as fhir_settings
from adapter.net.retry import RetryPolicy


def client_for(site: str, server: fhir_settings.FhirServerSettings) -> http.FhirClient:
    """A client for one site's server; reads the secrets the config names (never logs them)."""
    retry = server.retry
    return http.FhirClient(
        site,
        server.base_url,
        auth=auth.make_authorizer(server.auth),
        timeout=server.timeout_seconds,
        tls=server.tls,
        retry=RetryPolicy(
            attempts=retry.attempts,
            backoff=retry.backoff_seconds,
            max_backoff=retry.max_backoff_seconds,
            retry_after_cap=retry.retry_after_cap_seconds,
            max_wait=retry.max_wait_seconds,
        ),
        max_body_bytes=server.max_response_bytes,
        max_resource_bytes=server.max_resource_bytes,
    )
