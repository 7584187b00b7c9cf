"""The router: one port for plain HTTP routed by ``Host``, one for TLS routed by SNI, on the
runtime's proxy (the same epoll data path that serves every app's port, so the router
costs apps as little as the runtime's own proxy does).

It reads only a connection's first bytes to choose the app, then splices bytes both ways:
TLS is not terminated here (an app's https sidecar does that with the app's own
certificate), and a connection stays with the app it was first routed to.
"""

from __future__ import annotations

import re
import socket

from paas.router import pages, sni
from paas.router.table import App, TableFile
from paas_runtime.proxy import Backend, Proxy

_HOST = re.compile(rb"\r\nhost:[ \t]*([^\r\n]*?)[ \t]*\r\n", re.IGNORECASE)
_PORT = re.compile(r":\d*$")


def host_of(request: bytes) -> str | None:
    """The host name (no port, lower-case) an HTTP/1 request's ``Host`` header names."""
    found = _HOST.search(request)
    if found is None:
        return None
    value = found.group(1).decode("latin-1").strip()
    if value.startswith("["):  # an IPv6 literal
        return value.split("]", 1)[0] + "]"
    return _PORT.sub("", value).lower().rstrip(".") or None


class Router(Proxy):
    moves = False  # a connection is routed once, by what it said first

    def __init__(self, listener: socket.socket, table: TableFile, tls: bool) -> None:
        super().__init__(listener)
        self.table = table
        self.tls = tls

    def route(self, first: bytes | None) -> Backend | bytes:
        if self.tls:
            name = sni.server_name(first or b"")
            app = self._find(name) if name else None
            if app is None or not app.tls or not app.serving:
                return pages.UNRECOGNIZED_NAME
        else:
            host = host_of(first or b"")
            if host is None:
                return pages.no_host()
            app = self._find(host)
            if app is None:
                return pages.unknown_host(host, self.table.table.domain)
            if not app.serving:
                return pages.not_serving(host, app.name)
        app.backend.acquire()
        return app.backend

    def _find(self, host: str) -> App | None:
        """The app at ``host``; when there is none that serves, the file is read again first
        if it changed since the last poll (an app that just went live is routed at once)."""
        app = self.table.table.find(host)
        if (app is None or not app.serving or (self.tls and not app.tls)) and self.table.refresh():
            app = self.table.table.find(host)
        return app
