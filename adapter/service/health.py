"""The service's local HTTP endpoint: liveness, readiness and Prometheus metrics.

- ``/healthz``: the process and its scheduler are alive (200) or not (503);
  for a container HEALTHCHECK or systemd watchdog scripts.
- ``/readyz``: the state database answers and every site synced recently
  (200), else 503 with the reasons as JSON; for monitoring and alerting.
- ``/metrics``: Prometheus text format from prometheus-client's registry.

A stdlib ``ThreadingHTTPServer`` in a daemon thread: three read-only GET
routes need no web framework, and a slow scrape never blocks a sync.  It
binds to 127.0.0.1 by default; nothing here needs to be reachable from
outside the host except by a local Prometheus agent or a reverse proxy.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

from adapter import errors
from adapter.service import metrics
from adapter.service.status import Readiness

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Probes:
    """What the endpoint asks the service."""

    alive: Callable[[], bool]
    ready: Callable[[], Readiness]


def parse_address(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[ipv6]:port`` -> (host, port)."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise errors.ConfigError(
            f"service.listen {listen!r} is not HOST:PORT; use e.g. 127.0.0.1:9477 (port 0 picks a free one)"
        )
    return host.strip("[]"), int(port)


class HealthServer:
    """The HTTP endpoint, serving in a background thread until ``stop``."""

    def __init__(self, listen: str, probes: Probes) -> None:
        host, port = parse_address(listen)
        handler = type("Handler", (_Handler,), {"probes": probes})
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        try:
            self._server = server_class((host, port), handler)
        except OSError as exc:
            raise errors.ConfigError(
                f"service.listen {listen!r} cannot be used ({exc.strerror or exc}); "
                "pick a free local port, or pass --listen HOST:PORT"
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="health-http", daemon=True
        )

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self) -> None:
        self._thread.start()
        log.info("health endpoint listening", extra={"address": self.address})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    probes: Probes
    server_version = "trial-adapter"
    sys_version = ""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            alive = self.probes.alive()
            self._send(
                HTTPStatus.OK if alive else HTTPStatus.SERVICE_UNAVAILABLE, b"ok\n" if alive else b"down\n"
            )
        elif path == "/readyz":
            readiness = self.probes.ready()
            body = orjson.dumps({"ready": readiness.ready, "problems": readiness.problems}) + b"\n"
            status = HTTPStatus.OK if readiness.ready else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, body, "application/json")
        elif path == "/metrics":
            body, content_type = metrics.exposition()
            self._send(HTTPStatus.OK, body, content_type)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found: try /healthz, /readyz or /metrics\n")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Requests go to the adapter's log at debug level, not to stderr."""
        log.debug("health request", extra={"request": format % args})
