"""One client connection relayed to the service behind the sidecar, request by request.

HTTP/1.1 framing on both sides is h11's (chunked bodies, HEAD, close-delimited answers,
pipelining refused rather than mangled); what the sidecar adds is small: it tells the
service how the request came (``X-Forwarded-For``/``-Proto``/``-Host``), answers plain HTTP
with a redirect when asked, sends HSTS over TLS when asked, answers ``100 Continue``
itself, keeps both connections alive between requests, and hands an upgraded connection
(a WebSocket) over to a byte-for-byte tunnel.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass

import h11

CHUNK = 256 * 1024
MAX_HEAD = 64 * 1024
# Headers that describe one hop, not the request: each side's connection is the sidecar's own.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade", b"expect"})
FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"})


@dataclass(frozen=True)
class Policy:
    """What the relay does with each request: where the service is, and what to add."""

    upstream: tuple[str, int]
    https_port: int  # where the sidecar takes TLS: a direct plain request is redirected there
    redirect: bool = False  # answer plain HTTP with 308 to https://
    redirect_port: int | None = None  # the port redirects name when the request came through another
    hsts_max_age: int = 0  # seconds; 0: no Strict-Transport-Security
    idle_timeout: float = 75.0  # a kept-alive client's silence before the sidecar closes
    upstream_timeout: float = 300.0  # the service's silence before the request fails (504)


def _answer(status: int, reason: bytes, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
    body = text.encode() + b"\n"
    head = [b"HTTP/1.1 %d %s" % (status, reason), b"content-type: text/plain; charset=utf-8",
            b"content-length: %d" % len(body), b"connection: close"]
    head += [name + b": " + value for name, value in extra or []]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class _Closed(Exception):
    """A side went away (or broke the protocol) mid-exchange."""


class Relay:
    def __init__(self, client: socket.socket, peer: str, tls: bool, policy: Policy) -> None:
        self.sock = client
        self.peer = peer
        self.tls = tls
        self.policy = policy
        self.client = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.upstream: socket.socket | None = None
        self.up: h11.Connection | None = None

    def run(self) -> None:
        try:
            self._serve()
        except (OSError, _Closed):
            pass
        finally:
            self._drop_upstream()
            with contextlib.suppress(OSError):
                self.sock.close()

    def _serve(self) -> None:
        self.sock.settimeout(self.policy.idle_timeout)
        while True:
            try:
                event = _next(self.client, self.sock)
            except h11.RemoteProtocolError as e:
                status = e.error_status_hint
                self.sock.sendall(_answer(status, b"Bad Request" if status == 400 else b"Error", f"bad request: {e}"))
                return
            if not isinstance(event, h11.Request):
                return  # the client closed between requests
            if not self._exchange(event):
                return
            if h11.MUST_CLOSE in (self.client.our_state, self.client.their_state):
                return
            self.client.start_next_cycle()

    # -- one request ----------------------------------------------------------

    def _exchange(self, request: h11.Request) -> bool:
        """Relay one request and its answer; False when the client connection must end."""
        headers = [(name, value) for name, value in request.headers]
        host = next((v for n, v in headers if n == b"host"), b"")
        if not self.tls and self.policy.redirect:
            self.sock.sendall(self._redirect(host, request.target))
            return False
        upgrade = next((v for n, v in headers if n == b"upgrade"), None)
        wants_upgrade = upgrade is not None and any(
            b"upgrade" in v.lower() for n, v in headers if n == b"connection")
        before = b", ".join(v for n, v in headers if n == b"x-forwarded-for")
        forwarded = [(n, v) for n, v in headers if n not in HOP_BY_HOP and n not in FORWARDED]
        forwarded += [
            (b"x-forwarded-for", (before + b", " if before else b"") + self.peer.encode()),
            (b"x-forwarded-proto", b"https" if self.tls else b"http"),
        ]
        if host:
            forwarded.append((b"x-forwarded-host", host))
        if wants_upgrade:
            assert upgrade is not None
            forwarded += [(b"connection", b"upgrade"), (b"upgrade", upgrade)]
        if self.client.they_are_waiting_for_100_continue:
            self._to_client(h11.InformationalResponse(status_code=100, headers=[]))
        if not self._connect():
            self.sock.sendall(_answer(502, b"Bad Gateway", f"the service on {_where(self.policy)} is not answering"))
            return False
        self._to_upstream(h11.Request(method=request.method, target=request.target, headers=forwarded))
        while True:  # the request's body
            event = _next(self.client, self.sock)
            if isinstance(event, h11.Data):
                self._to_upstream(h11.Data(data=event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._to_upstream(h11.EndOfMessage(headers=event.headers))
                break
            else:
                raise _Closed
        return self._respond(wants_upgrade)

    def _respond(self, wants_upgrade: bool) -> bool:
        assert self.up is not None and self.upstream is not None
        self.upstream.settimeout(self.policy.upstream_timeout)
        answered = False
        while True:
            try:
                event = _next(self.up, self.upstream)
            except (TimeoutError, h11.RemoteProtocolError, OSError) as e:
                if answered:
                    raise _Closed from e
                late = isinstance(e, TimeoutError)
                self.sock.sendall(_answer(504 if late else 502, b"Gateway Timeout" if late else b"Bad Gateway",
                                          f"the service on {_where(self.policy)} "
                                          f"{'did not answer in time' if late else 'broke the connection'}"))
                return False
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101 and wants_upgrade:
                    self._to_client(h11.InformationalResponse(
                        status_code=101, headers=list(event.headers), reason=event.reason))
                    self._tunnel()
                    return False
                self._to_client(event)
                continue
            if isinstance(event, h11.Response):
                headers = [(n, v) for n, v in event.headers if n not in HOP_BY_HOP]
                if self.tls and self.policy.hsts_max_age > 0 and not any(
                        n == b"strict-transport-security" for n, _ in headers):
                    headers.append((b"strict-transport-security", b"max-age=%d" % self.policy.hsts_max_age))
                self._to_client(h11.Response(status_code=event.status_code, headers=headers, reason=event.reason))
                answered = True
            elif isinstance(event, h11.Data):
                self._to_client(event)
            elif isinstance(event, h11.EndOfMessage):
                self._to_client(h11.EndOfMessage())
                break
            else:
                raise _Closed
        if self.up.our_state is h11.DONE and self.up.their_state is h11.DONE:
            self.up.start_next_cycle()  # kept alive for the client's next request
        else:
            self._drop_upstream()
        return True

    def _redirect(self, host: bytes, target: bytes) -> bytes:
        name, _, port = host.decode("latin-1").rpartition(":") if host.count(b":") == 1 else (host.decode("latin-1"), "", "")
        if not name:
            name = self.sock.getsockname()[0]
        same = port.isdigit() and int(port) == self.policy.https_port
        to = self.policy.https_port if same else self.policy.redirect_port
        location = f"https://{name}{'' if to in (None, 443) else f':{to}'}{target.decode('latin-1')}"
        return _answer(308, b"Permanent Redirect", f"this service is served over HTTPS: {location}",
                       [(b"location", location.encode("latin-1"))])

    # -- the service's connection -----------------------------------------------

    def _connect(self) -> bool:
        if self.up is not None and self.up.our_state is h11.IDLE:
            return True
        self._drop_upstream()
        try:
            upstream = socket.create_connection(self.policy.upstream, timeout=10)
        except OSError:
            return False
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.upstream, self.up = upstream, h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        return True

    def _drop_upstream(self) -> None:
        if self.upstream is not None:
            with contextlib.suppress(OSError):
                self.upstream.close()
        self.upstream = self.up = None

    def _to_client(self, event: h11.Event) -> None:
        data = self.client.send(event)
        if data:
            self.sock.sendall(data)

    def _to_upstream(self, event: h11.Event) -> None:
        assert self.up is not None and self.upstream is not None
        data = self.up.send(event)
        if data:
            self.upstream.sendall(data)

    def _tunnel(self) -> None:
        """Both ways byte for byte (after a 101), until either side closes."""
        assert self.up is not None and self.upstream is not None
        early, _ = self.client.trailing_data
        late, _ = self.up.trailing_data
        if early:
            self.upstream.sendall(early)
        if late:
            self.sock.sendall(late)
        self.sock.settimeout(None)
        self.upstream.settimeout(None)
        back = threading.Thread(target=_copy, args=(self.upstream, self.sock), daemon=True)
        back.start()
        _copy(self.sock, self.upstream)
        back.join()


def _copy(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _next(conn: h11.Connection, sock: socket.socket) -> h11.Event | None:
    """The next event of ``conn``, reading ``sock`` as needed; None once it can say no more."""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(CHUNK))
            continue
        if event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
            return None
        return event


def _where(policy: Policy) -> str:
    host, port = policy.upstream
    return f"{host}:{port}"
