"""``/metrics``, ``/health``, ``/health/live`` and ``/health/ready`` on their own thread.

The one HTTP side of the services that are not web apps (ingest, sink, stream). It runs outside
the service's own loop, so nothing the loop does (a long frame, a hung write, waiting for room
in a producer queue) can hold back a probe: a liveness probe that times out gets a pod killed.
Answers come from :mod:`signalstack.observability.probes`, as the FastAPI helper's do.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry

from signalstack.observability.probes import (
    HEALTH_PATH,
    JSON,
    LIVE_PATH,
    METRICS_PATH,
    READY_PATH,
    Check,
    always_ok,
    metrics_payload,
    probe,
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    endpoints: HealthServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5

    def _answer(self, send_body: bool) -> None:
        ep = self.server.endpoints
        path = self.path.split("?", 1)[0]
        if path == METRICS_PATH:
            status = 200
            body, ctype = metrics_payload(ep.registry, self.headers.get("Accept"))
        elif path in (LIVE_PATH, HEALTH_PATH, READY_PATH):
            result = probe(ep.ready if path == READY_PATH else ep.live)
            status, body, ctype = result.status_code, result.body(), JSON
        else:
            status, body, ctype = 404, b'{"status": "not found"}', JSON
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(True)

    def do_HEAD(self) -> None:
        self._answer(False)

    def log_message(self, format: str, *args: object) -> None:
        pass


class HealthServer:
    """The endpoints of one service: ``registry`` (None: prometheus_client's default one) at
    ``/metrics``, ``live`` checks at ``/health/live`` and ``/health``, ``ready`` checks at
    ``/health/ready``. Port 0 picks a free port (:attr:`port` names it once started)."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry | None = None,
        *,
        live: Sequence[Check] = (always_ok,),
        ready: Sequence[Check] = (),
        name: str = "health",
    ) -> None:
        self.host, self.port, self.name = host, port, name
        self.registry = registry
        self.live, self.ready = tuple(live), tuple(ready)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> HealthServer:
        """Listen now (raises OSError when the port is taken) and serve on a daemon thread."""
        srv = _Server((self.host, self.port), _Handler)
        srv.endpoints = self
        self.port = int(srv.server_address[1])
        self._server = srv
        self._thread = threading.Thread(
            target=srv.serve_forever, kwargs={"poll_interval": 0.2}, name=self.name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        srv, self._server = self._server, None
        if srv is not None:
            srv.shutdown()
            srv.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"


__all__ = ["HealthServer"]
