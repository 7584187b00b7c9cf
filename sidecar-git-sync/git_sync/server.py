"""The HTTP endpoint: readiness at `/`, Prometheus at `/metrics`, `POST /sync`, and with
--http-pprof the debug endpoints under `/debug/pprof/`.

A small HTTP/1.1 server on `socketserver` rather than `http.server`, whose
imports (`http.client`, `email`, `html`, `mimetypes`) would be a good part of
an idle sidecar's memory. It serves three fixed routes to probes, scrapers and
the control plane: request line, headers, an optional `Content-Length` body,
keep-alive. Each connection gets a thread, so a `POST /sync` waiting for a
sync never blocks the probes. With the pod's credential (`git_sync.credential`), `POST /sync`
and the debug endpoints want it; readiness and `/metrics` stay open.
"""

import json
import socket
import socketserver
import threading
from typing import Any

from git_sync import credential
from git_sync.errors import SyncError
from git_sync.logs import LOG, V
from git_sync.metrics import Metrics
from git_sync.syncer import Syncer

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 405: "Method Not Allowed",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
_MAX_LINE = 8192
_MAX_HEADERS = 100
_IDLE_TIMEOUT = 120.0  # seconds a kept-alive connection may sit idle
_UNAUTHORIZED = {"error": f"this endpoint needs the pod's credential (Authorization: Bearer, {credential.VARIABLE})"}


class _BadRequest(Exception):
    pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    syncer: Syncer
    metrics: Metrics | None
    pprof: bool = False
    secret: bytes | None = None


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    timeout = _IDLE_TIMEOUT
    # Each answer is one write, but Nagle could still hold it for the client's ACK.
    disable_nagle_algorithm = True

    def handle(self) -> None:
        keep_alive = True
        while keep_alive:
            try:
                request = self._read_request()
            except (_BadRequest, UnicodeDecodeError, ValueError):
                self._send(400, b"bad request\n", keep_alive=False)
                return
            except OSError:  # idle timeout, reset by peer
                return
            if request is None:
                return
            method, path, version, headers = request
            keep_alive = _wants_keep_alive(version, headers.get("connection", ""))
            self._dispatch(method, path.partition("?")[0], headers, keep_alive)

    def _read_request(self) -> tuple[str, str, str, dict[str, str]] | None:
        line = self.rfile.readline(_MAX_LINE + 1)
        while line in (b"\r\n", b"\n"):  # tolerated before a request line (RFC 9112 2.2)
            line = self.rfile.readline(_MAX_LINE + 1)
        if not line:
            return None
        if len(line) > _MAX_LINE:
            raise _BadRequest()
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest()
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            header = self.rfile.readline(_MAX_LINE + 1)
            if header in (b"\r\n", b"\n", b""):
                break
            name, colon, value = header.decode("latin-1").partition(":")
            if not colon:
                raise _BadRequest()
            headers[name.strip().lower()] = value.strip()
        else:
            raise _BadRequest()
        if headers.get("transfer-encoding", "").lower() not in ("", "identity"):
            raise _BadRequest()  # no route takes a body worth streaming
        length = int(headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        return parts[0], parts[1], parts[2], headers

    def _dispatch(self, method: str, path: str, headers: dict[str, str], keep_alive: bool) -> None:
        LOG.log(V(2), "http: %s %s %s", self.client_address[0], method, path)
        head = method == "HEAD"
        pprof = self.server.pprof and (path == "/debug/pprof" or path.startswith("/debug/pprof/"))
        if (path == "/sync" or pprof) and not credential.allows(self.server.secret, headers.get("authorization")):
            self._send(401, json.dumps(_UNAUTHORIZED).encode() + b"\n", keep_alive, "application/json",
                       head=head, extra=("WWW-Authenticate: Bearer",))
        elif path == "/sync":
            if method != "POST":
                self._send(405, b"method not allowed\n", keep_alive, extra=("Allow: POST",))
                return
            try:
                result = self.server.syncer.request()
            except SyncError as e:
                self._send_json(e.http_status, {"error": str(e)}, keep_alive)
            else:
                self._send_json(200, {"hash": result.hash, "changed": result.changed}, keep_alive)
        elif pprof:
            from git_sync import pprof  # traceback and its imports: only for those who ask

            status, body = pprof.answer(path)
            self._send(status, body, keep_alive, head=head)
        elif path == "/metrics" and self.server.metrics is not None:
            body, content_type = self.server.metrics.exposition(headers.get("accept", ""))
            self._send(200, body, keep_alive, content_type, head=head)
        else:
            # As upstream's catch-all "/" route: every other path is the readiness probe.
            ready = self.server.syncer.ready  # as upstream: 200 with no body, or Go's http.Error
            self._send(200 if ready else 503, b"" if ready else b"repo is not ready\n",
                       keep_alive, head=head)

    def _send_json(self, status: int, body: dict[str, Any], keep_alive: bool) -> None:
        self._send(status, json.dumps(body).encode() + b"\n", keep_alive, "application/json")

    def _send(self, status: int, body: bytes, keep_alive: bool,
              content_type: str = "text/plain; charset=utf-8", head: bool = False,
              extra: tuple[str, ...] = ()) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
                 f"Content-Type: {content_type}", f"Content-Length: {len(body)}",
                 "Connection: " + ("keep-alive" if keep_alive else "close"), *extra, "", ""]
        try:
            self.wfile.write("\r\n".join(lines).encode("latin-1") + (b"" if head else body))
        except OSError:
            pass  # the client left; nothing to tell it


def _wants_keep_alive(version: str, connection: str) -> bool:
    tokens = {t.strip().lower() for t in connection.split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def parse_bind(bind: str) -> tuple[str, int]:
    """("host", port) from `HOST:PORT`, `:PORT` or `[v6]:PORT`, as Go's net.Listen takes."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"invalid --http-bind {bind!r} (want HOST:PORT or :PORT)")
    return host.strip("[]"), int(port)


def serve(
    bind: str, syncer: Syncer, metrics: Metrics | None, debug: bool = False, secret: bytes | None = None
) -> socketserver.BaseServer:
    """Start serving on `bind` in a daemon thread; raises OSError if it can't bind.
    ``secret``: the pod's credential, which `POST /sync` and the debug endpoints then want."""
    host, port = parse_bind(bind)
    server = (_Server6 if ":" in host else _Server)((host, port), _Handler)
    server.syncer = syncer
    server.metrics = metrics
    server.pprof = debug  # --http-pprof
    server.secret = secret
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
