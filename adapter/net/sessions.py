"""One way to open an HTTP session to a server: pooled, named, and with the config's TLS.

Sources and sinks both connect through ``open_session``, so a ``[...tls]``
table means the same on either side: the certificate is checked against
the system's CAs, or against ``ca_bundle`` when one is given; a client
certificate (and its key, unless the PEM holds both) is presented for
mutual TLS; ``verify = false`` turns checks off and says so in the log every
time a session opens.  Proxies come from the usual ``HTTPS_PROXY`` /
``NO_PROXY`` environment variables, as ``requests`` reads them.

The connection pool keeps connections open (one TLS handshake per pass, not
per page).  Retries are the caller's (``adapter.net.retry`` for a source,
the outbox for a sink), so urllib3's own are off.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import requests
import requests.adapters

from adapter import __version__
from adapter.net.settings import TlsSettings

log = logging.getLogger(__name__)

USER_AGENT = f"trial-adapter/{__version__}"  # servers see who calls


def open_session(
    tls: TlsSettings, *, peer: str, tls_table: str, log_extra: Mapping[str, str] | None = None
) -> requests.Session:
    """A pooled session with the TLS settings applied.

    ``peer`` names the server for the warning about unchecked certificates
    ("this site", "the repository"), ``tls_table`` the config table that
    turns checks back on.
    """
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.verify = tls.session_verify
    cert = tls.session_cert
    if cert is not None:
        session.cert = cert
    if not tls.verify:
        log.warning(
            "TLS certificate verification is OFF for %s: anyone on the network path can read and alter "
            "its data; set %s verify = true",
            peer,
            tls_table,
            extra=dict(log_extra or {}),
        )
    return session
