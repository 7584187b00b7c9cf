"""The sidecar's listeners: each connection gets a thread that relays it (`paas_https.relay`).

A connection's first byte says what it speaks: a TLS handshake (0x16) is wrapped with the
certificate current at that moment; anything else is plain HTTP on the same port —
redirected or forwarded as the policy says — so one published port serves both, and a
platform router can send plain HTTP to the same address it sends TLS to.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from paas_https.certs import Certificates
from paas_https.relay import Policy, Relay

TLS_HANDSHAKE = 0x16
HANDSHAKE_TIMEOUT = 10.0


class Server:
    def __init__(self, listeners: list[socket.socket], certificates: Certificates, policy: Policy,
                 max_connections: int = 1024) -> None:
        self.listeners = listeners
        self.certificates = certificates
        self.policy = policy
        self._slots = threading.BoundedSemaphore(max_connections)
        self._stopped = threading.Event()

    def start(self) -> None:
        for listener in self.listeners:
            threading.Thread(target=self._accept, args=(listener,), daemon=True, name="accept").start()

    def stop(self) -> None:
        self._stopped.set()
        for listener in self.listeners:
            with contextlib.suppress(OSError):
                listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            self._slots.acquire()  # at the limit, new connections wait in the listen queue
            try:
                sock, peer = listener.accept()
            except OSError:
                self._slots.release()
                if self._stopped.is_set():
                    return
                continue
            threading.Thread(target=self._connection, args=(sock, peer[0]), daemon=True).start()

    def _connection(self, sock: socket.socket, peer: str) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(HANDSHAKE_TIMEOUT)
            try:
                first = sock.recv(1, socket.MSG_PEEK)
            except OSError:
                first = b""
            if not first:
                sock.close()
                return
            tls = first[0] == TLS_HANDSHAKE
            if tls:
                try:
                    sock = self.certificates.context.wrap_socket(sock, server_side=True)
                except (OSError, ValueError):  # a failed handshake: the client was told by TLS
                    sock.close()
                    return
            Relay(sock, peer, tls, self.policy).run()
        finally:
            self._slots.release()


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock
