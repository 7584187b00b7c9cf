"""Start the router beside the control plane (`paas up`): bind its ports here, so a busy one
is one sentence before anything starts, and hand the sockets to its own process, which
outlives restarts of the API and is restarted by `paas up`'s supervisor if it exits."""

from __future__ import annotations

import os
import socket
import sys

from paas import routes
from paas.errors import PaasError
from paas.settings import Settings
from paas.supervisor import Part


def listen(host: str, port: int, purpose: str, hint: str) -> socket.socket:
    """A listening socket on ``host:port``, or one sentence saying for what (``purpose``,
    may be empty) and what to change (``hint``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as e:
        listener.close()
        raise PaasError(f"cannot listen on {host}:{port}{purpose}: {e.strerror} ({hint})") from None
    listener.listen(1024)
    return listener


def part(settings: Settings) -> tuple[Part, list[str], list[socket.socket]] | None:
    """The router on the settings' ports, as a part for `paas up`'s supervisor, and the URLs
    it serves as patterns (``http://NAME.<domain>:PORT/``); None when both ports are 0; and
    its listening sockets, which stay open in `paas up`: each router process it starts is
    handed them, so a restarted router takes over the connections that queued meanwhile."""
    wanted = [(port, setting, tls) for port, setting, tls in (
        (settings.router_port, "PAAS_ROUTER_PORT", False),
        (settings.router_tls_port, "PAAS_ROUTER_TLS_PORT", True),
    ) if port]
    if not wanted:
        return None
    host = settings.app_address or "127.0.0.1"
    listeners: list[tuple[socket.socket, bool]] = []
    try:
        for port, setting, tls in wanted:
            listeners.append((listen(host, port, " for the router",
                                     f"set {setting} to a free port, or 0 for no router"), tls))
    except PaasError:
        for listener, _ in listeners:
            listener.close()
        raise
    args = [sys.executable, "-m", "paas.router", "--table", str(routes.table_path(settings.data_dir)),
            "--parent", str(os.getpid())]
    for listener, tls in listeners:
        args += ["--tls-fd" if tls else "--fd", str(listener.fileno())]
    urls = [f"{'https' if tls else 'http'}://NAME.{settings.domain}:{port}/" for port, _, tls in wanted]
    sockets = [listener for listener, _ in listeners]
    return Part("router", args, pass_fds=tuple(s.fileno() for s in sockets)), urls, sockets
