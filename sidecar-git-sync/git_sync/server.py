"""The HTTP endpoint: readiness at `/`, Prometheus at `/metrics`, `POST /sync`.

The standard library's threading server keeps the sidecar's footprint small;
each request gets a thread, so a `POST /sync` waiting for a sync never blocks
the probes.
"""

import json
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from git_sync.errors import SyncError
from git_sync.logs import LOG, V
from git_sync.metrics import Metrics
from git_sync.syncer import Syncer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    syncer: Syncer
    metrics: Metrics | None

    def server_bind(self) -> None:
        # HTTPServer's own version resolves the host's FQDN, which can stall
        # startup for seconds where DNS is slow; nothing here needs the name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: the control plane may reuse its connection
    # Headers and body go out in separate writes; without TCP_NODELAY the body
    # waits for the client's delayed ACK (~40 ms per response).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        path = self.path.partition("?")[0]
        if path == "/":
            if self.server.syncer.ready:
                self._send(200, b"ok\n")
            else:
                self._send(503, b"repo is not ready\n")
        elif path == "/metrics" and self.server.metrics is not None:
            self._send(200, self.server.metrics.exposition(),
                       "text/plain; version=0.0.4; charset=utf-8")
        else:
            self._send(404, b"not found\n")

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.partition("?")[0] != "/sync":
            self._send(404, b"not found\n")
            return
        try:
            result = self.server.syncer.request()
        except SyncError as e:
            self._send_json(e.http_status, {"error": str(e)})
        else:
            self._send_json(200, {"hash": result.hash, "changed": result.changed})

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode() + b"\n", "application/json")

    def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.log(V(2), "http: %s %s", self.address_string(), format % args)


def parse_bind(bind: str) -> tuple[str, int]:
    """("host", port) from `HOST:PORT`, `:PORT` or `[v6]:PORT`, as Go's net.Listen takes."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"invalid --http-bind {bind!r} (want HOST:PORT or :PORT)")
    return host.strip("[]"), int(port)


def serve(bind: str, syncer: Syncer, metrics: Metrics | None) -> ThreadingHTTPServer:
    """Start serving on `bind` in a daemon thread; raises OSError if it can't bind."""
    host, port = parse_bind(bind)
    server = (_Server6 if ":" in host else _Server)((host, port), _Handler)
    server.syncer = syncer
    server.metrics = metrics
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
