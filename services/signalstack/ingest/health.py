"""``/metrics`` (Prometheus), ``/health/live``, ``/health/ready`` on their own thread.

The server runs outside the service's event loop, so nothing the loop does (a long frame, a gap
fill, waiting for room in the producer queue) can hold back a probe: a liveness probe that times
out gets a pod killed with every queued trade in it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Check = Callable[[], tuple[bool, str]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    health: HealthServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5

    def do_GET(self) -> None:
        h = self.server.health
        path = self.path.split("?")[0]
        ctype = "text/plain; charset=utf-8"
        if path == "/metrics":
            status, body, ctype = 200, generate_latest(h.registry), CONTENT_TYPE_LATEST
        elif path in ("/health/live", "/health/ready"):
            try:
                ok, why = (h.live if path == "/health/live" else h.ready)()
            except Exception as err:  # a broken check answers 503, never kills the server
                ok, why = False, f"check failed: {err!r}"
            status, body = (200 if ok else 503), (why + "\n").encode()
        else:
            status, body = 404, b"not found\n"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class HealthServer:
    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, live: Check, ready: Check
    ) -> None:
        self.host, self.port = host, port
        self.registry, self.live, self.ready = registry, live, ready
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        srv = _Server((self.host, self.port), _Handler)
        srv.health = self
        self.port = int(srv.server_address[1])
        self._server = srv
        self._thread = threading.Thread(
            target=srv.serve_forever, kwargs={"poll_interval": 0.2}, name="health", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        srv, self._server = self._server, None
        if srv is not None:
            await asyncio.to_thread(srv.shutdown)
            srv.server_close()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
