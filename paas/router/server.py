"""The router: one port for plain HTTP routed by ``Host``, one for TLS routed by SNI, on the
runtime's proxy (the same epoll data path that serves every app's port, so the router
costs apps as little as the runtime's own proxy does).

Nothing is sent to an app before the router has read what it routes on, whole: a request's
head (:mod:`paas.router.heads`) or a ClientHello (:mod:`paas.router.sni`). Then bytes are
spliced both ways: TLS is not terminated here (an app's https sidecar does that with the
app's own certificate); each request of a kept-alive HTTP connection is routed by its own
``Host`` (:class:`~paas.router.connection.RoutedConnection`).
"""

from __future__ import annotations

import socket

from paas.router import pages
from paas.router.connection import RoutedConnection
from paas.router.deadlines import Deadlines
from paas.router.heads import Head, Requests
from paas.router.sni import Hello
from paas.router.table import App, TableFile
from paas_runtime.proxy import Backend, Proxy

#: How long a client has to send a request's head (or its ClientHello) whole, counted from
#: when it connected or, on a kept-alive connection, from the head's first byte.
HEAD_TIMEOUT = 10.0


class Router(Proxy):
    def __init__(self, listener: socket.socket, table: TableFile, tls: bool,
                 head_timeout: float = HEAD_TIMEOUT) -> None:
        super().__init__(listener)
        self.table = table
        self.tls = tls
        self.deadlines = Deadlines(self._reactor, head_timeout)

    def _open(self, client: socket.socket) -> None:
        RoutedConnection(self, self._reactor, client)

    def reader(self) -> Requests | Hello:
        """What reads a new connection's heads: its requests' (HTTP), or its ClientHello (TLS)."""
        return Hello() if self.tls else Requests()

    def choose(self, head: Head) -> Backend | bytes:
        """The backend for what opened with ``head`` (not acquired), or the router's own answer."""
        if self.tls:
            if head.status:
                return pages.DECODE_ERROR
            app = self._find(head.host) if head.host else None
            if app is None or not app.tls or not app.serving:
                return pages.UNRECOGNIZED_NAME
            return app.backend
        if head.status:
            return pages.refused(head.status, head.reason)
        if head.host is None:
            return pages.no_host()
        app = self._find(head.host)
        if app is None:
            return pages.unknown_host(head.host, self.table.table.domain)
        if not app.serving:
            return pages.not_serving(head.host, app.name)
        return app.backend

    def timed_out(self, started: bool) -> bytes | None:
        """The answer to a client whose first head did not arrive whole in time (None: close)."""
        return pages.timed_out(self.deadlines.timeout) if started and not self.tls else None

    def _find(self, host: str) -> App | None:
        """The app at ``host``; when there is none that serves, the file is read again first
        if it changed since the last poll (an app that just went live is routed at once)."""
        app = self.table.table.find(host)
        if (app is None or not app.serving or (self.tls and not app.tls)) and self.table.refresh():
            app = self.table.table.find(host)
        return app
