"""The HTTP endpoint: `/topz` (text, or JSON), `/healthz`.

`/topz` wants the pod's credential when one is configured (`paas_topz.credential`);
`/healthz`, a probe's, stays open: it tells nothing.

A small HTTP/1.1 server on `socketserver` (not `http.server`, whose imports would be a
good part of an idle sidecar's memory): GET only, one thread per connection, keep-alive.
"""

from __future__ import annotations

import json
import socket
import socketserver
from collections.abc import Callable
from urllib.parse import parse_qs

from paas_topz import credential, procs

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
UNAUTHORIZED = b'{"error": "this endpoint needs the pod\'s credential (Authorization: Bearer, TOPZ_TOKEN_FILE)"}\n'
_MAX_LINE = 8192


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    sample: float = 0.1
    secret: bytes | None = None


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    timeout = 60
    disable_nagle_algorithm = True

    def handle(self) -> None:
        while True:
            try:
                request = self._read()
            except (OSError, ValueError, UnicodeDecodeError):
                return
            if request is None:
                return
            method, target, headers = request
            keep = headers.get("connection", "").lower() != "close"
            self._answer(method, target, headers, keep)
            if not keep:
                return

    def _read(self) -> tuple[str, str, dict[str, str]] | None:
        line = self.rfile.readline(_MAX_LINE + 1)
        if not line:
            return None
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or len(line) > _MAX_LINE:
            raise ValueError("bad request line")
        headers = {}
        while (header := self.rfile.readline(_MAX_LINE + 1)) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if int(headers.get("content-length") or 0):
            self.rfile.read(int(headers["content-length"]))
        return parts[0], parts[1], headers

    def _answer(self, method: str, target: str, headers: dict[str, str], keep: bool) -> None:
        path, _, query = target.partition("?")
        if method not in ("GET", "HEAD"):
            return self._send(405, b"only GET\n", "text/plain; charset=utf-8", keep, ("Allow: GET",))
        if path == "/healthz":
            return self._send(200, b"ok\n", "text/plain; charset=utf-8", keep, head=method == "HEAD")
        if path != "/topz":
            return self._send(404, b"not found: try /topz\n", "text/plain; charset=utf-8", keep)
        if not credential.allows(self.server.secret, headers.get("authorization")):
            return self._send(401, UNAUTHORIZED, "application/json", keep, ("WWW-Authenticate: Bearer",))
        found = procs.snapshot(self.server.sample)
        wants_json = parse_qs(query).get("format") == ["json"] or "application/json" in headers.get("accept", "")
        if wants_json:
            body = json.dumps({"processes": [p.to_json() for p in found]}).encode()
            return self._send(200, body, "application/json", keep, head=method == "HEAD")
        return self._send(200, procs.text(found).encode(), "text/plain; charset=utf-8", keep, head=method == "HEAD")

    def _send(self, status: int, body: bytes, kind: str, keep: bool, extra: tuple[str, ...] = (),
              head: bool = False) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Type: {kind}", f"Content-Length: {len(body)}",
                 "Connection: " + ("keep-alive" if keep else "close"), *extra, "", ""]
        try:
            self.wfile.write("\r\n".join(lines).encode("latin-1") + (b"" if head else body))
        except OSError:
            pass


def serve(host: str, port: int, sample: float, ready: Callable[[tuple[str, int]], None] = lambda a: None,
          secret: bytes | None = None) -> None:
    """Serve until the process ends, to requests carrying ``secret`` (the pod's credential)
    if there is one; raises OSError if the address can't be bound."""
    server = (_Server6 if ":" in host else _Server)((host, port), _Handler)
    server.sample = sample
    server.secret = secret
    ready(server.server_address[:2])
    server.serve_forever()
