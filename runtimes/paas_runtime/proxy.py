"""The supervisor's TCP proxy: hands each connection it accepts to the current instance.

It serves listener 0 of the public port (:mod:`paas_runtime.port`): the
connections of instances that do not accept on the port themselves, the
``503`` while nothing serves, and what a stopped instance left queued on its
slot. Switching where it sends them is just :meth:`Proxy.switch`. Connections are spliced byte for byte (no HTTP
parsing); a request in flight stays with the instance it was handed to,
which is what lets an old instance drain, and a kept-alive HTTP connection
moves to the current instance between two requests (see
:class:`Connection`), so after a switch every new request meets the new
revision.

Every cycle the proxy spends on a small machine is taken from the app, so:

* the data path runs on raw non-blocking sockets in a bare epoll loop of its
  own (:mod:`paas_runtime.reactor`), not on asyncio transports;
* reads are large (:data:`CHUNK`) into one shared buffer, and sockets are
  ``TCP_NODELAY`` (accepted ones by inheriting it from the listener);
* the instance is connected to only once the client has sent its first
  bytes (HTTP clients speak first), which then go along with the connect: a
  single-threaded worker (gunicorn's default) never holds a connection
  waiting for a request still in the proxy, and a browser's idle
  pre-connection occupies no worker at all. A client that waits for the
  server to speak first is connected after :data:`FIRST_BYTES_WAIT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import select
import socket
import threading

from .reactor import Reactor, Timer

#: Bytes moved per ``recv``: large, so bulk transfers take few trips through Python.
CHUNK = 1024 * 1024
#: Connections accepted per wake-up of the listening socket.
ACCEPT_BATCH = 64
#: Pause in accepting when the process is out of file descriptors or memory.
ACCEPT_PAUSE = 0.1
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
#: How long to wait for a client's first bytes before connecting without them.
FIRST_BYTES_WAIT = 1.0
#: How long a refused client may take to read our short answer before we close.
REFUSED_LINGER = 1.0

#: An HTTP/1 request line (methods are tokens; the target has no spaces).
_REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ \r\n]+ HTTP/1\.[01]\r?\n")
_SWITCHING_PROTOCOLS = (b"HTTP/1.1 101 ", b"HTTP/1.0 101 ")

_IN, _OUT, _ERR = select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR
_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)
_IN_OR_GONE = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR


def _http_answer(status: str, text: str) -> bytes:
    body = text.encode() + b"\n"
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"
    ).encode() + body


NOT_SERVING = _http_answer("503 Service Unavailable", "no app instance is serving yet")
BAD_GATEWAY = _http_answer("502 Bad Gateway", "the app instance did not accept the connection")


class Backend:
    """One app instance as the proxy sees it: a loopback port and its open connections.

    Counted on the proxy's thread, waited on from the supervisor's event loop.
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.connections = 0
        self._lock = threading.Lock()
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._none_left = asyncio.Event()

    def acquire(self) -> None:
        with self._lock:
            self.connections += 1

    def release(self) -> None:
        with self._lock:
            self.connections -= 1
            notify = self._draining and not self.connections
        if notify and self._loop is not None:
            self._loop.call_soon_threadsafe(self._none_left.set)

    async def drained(self, timeout: float) -> bool:
        """Wait until no connection uses this backend; False if ``timeout`` ran out first.

        Call it once the proxy hands new connections elsewhere: from then on the
        count only goes down, so reaching zero once means done.
        """
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._draining = True
            if not self.connections:
                return True
        try:
            await asyncio.wait_for(self._none_left.wait(), timeout)
        except TimeoutError:
            return False
        return True


class Proxy:
    """Accepts on its listener; new connections go to the current backend (503 if none).

    A subclass may serve its connections its own way by overriding :meth:`_open` with a
    :class:`Connection` of its own (the platform's router does: it routes each request by
    what it says, on this same data path).
    """

    def __init__(self, listener: socket.socket) -> None:
        self.port: int = listener.getsockname()[1]
        self._backend: Backend | None = None
        # Held while a connection picks its backend, so that after switch()
        # returns no new connection can land on the previous one.
        self._lock = threading.Lock()
        self._listener = listener
        # Connections accepted on the listener inherit TCP_NODELAY from it (Linux): one
        # setsockopt here rather than one per connection.
        _nodelay(listener)
        self._reactor = Reactor()
        # One read buffer serves every connection: the reactor runs one
        # callback at a time and each writes out (or copies) what it read.
        self.buffer = memoryview(bytearray(CHUNK))

    def switch(self, backend: Backend | None) -> None:
        """Send new connections (and new requests on kept-alive ones) to ``backend`` (None: 503)."""
        with self._lock:
            self._backend = backend

    @property
    def current(self) -> Backend | None:
        return self._backend

    def pick(self) -> Backend | None:
        """The backend for a new connection, already acquired for it."""
        with self._lock:
            backend = self._backend
            if backend is not None:
                backend.acquire()
            return backend

    def start(self) -> None:
        self._reactor.register(self._listener.fileno(), _IN, self._accept)
        self._reactor.start()

    def adopt(self, clients: list[socket.socket]) -> None:
        """Take over connections accepted elsewhere (non-blocking), as if accepted here."""
        def serve_all() -> None:
            for client in clients:
                self._serve(client)

        if clients:
            self._reactor.call_soon_threadsafe(serve_all)

    def close(self) -> None:
        """Stop the proxy's thread (the listener is the public port's to close)."""
        self._reactor.stop()

    def _accept(self, mask: int) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in _OUT_OF_RESOURCES:
                    # The socket stays readable: pause rather than spin until fds free up.
                    self._reactor.modify(self._listener.fileno(), 0)
                    self._reactor.call_later(ACCEPT_PAUSE, self._resume_accepting)
                    return
                continue  # the client gave up before we got to it
            client.setblocking(False)
            self._open(client)

    def _serve(self, client: socket.socket) -> None:
        """Serve a connection accepted on another listener (it has not inherited our TCP_NODELAY)."""
        _nodelay(client)
        self._open(client)

    def _open(self, client: socket.socket) -> None:
        """Serve a newly accepted (non-blocking) connection."""
        Connection(self, self._reactor, client)

    def _resume_accepting(self) -> None:
        self._reactor.modify(self._listener.fileno(), _IN)


def _nodelay(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Refusal:
    """Answers a client with a short HTTP error (or TLS alert, or nothing), then closes.

    The request is read and dropped meanwhile: closing with unread input would
    reset the connection before the client has read the answer.
    """

    def __init__(self, reactor: Reactor, client: socket.socket, answer: bytes) -> None:
        self._reactor = reactor
        self._client = client
        self._fd = client.fileno()
        try:
            client.send(answer)
            client.shutdown(socket.SHUT_WR)
        except OSError:
            client.close()
            return
        reactor.register(self._fd, _IN, self._readable)
        self._timer = reactor.call_later(REFUSED_LINGER, self._close)

    def _readable(self, mask: int) -> None:
        try:
            if self._client.recv(4096):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._timer.cancel()
        self._close()

    def _close(self) -> None:
        self._reactor.forget(self._fd)
        self._client.close()


class Connection:
    """One client connection spliced to one app instance connection, both ways.

    Each socket has one epoll registration whose mask says what is awaited:
    reading it, and/or writing to it while bytes for it are stuck. "up" is
    the client-to-instance direction, "down" the way back.

    A kept-alive HTTP connection *moves* to the current instance when, after
    a switch, its client starts a new request: the instance has answered
    since the client last sent, nothing is in flight either way, and the new
    bytes open with an HTTP/1 request line. The client keeps its connection;
    the old instance's connection is closed between two requests, when it
    carries nothing. A connection that is not HTTP/1 from its first bytes, or
    that was upgraded (a ``101`` answer: WebSocket), never moves.
    """

    __slots__ = (
        "_proxy", "_reactor", "_buffer", "_client", "_upstream", "_backend", "_timer",
        "_up_pending", "_down_pending", "_up_eof", "_down_eof", "_client_mask", "_upstream_mask",
        "_answered", "_delivered", "_heard", "_tunnel",
    )

    def __init__(self, proxy: Proxy, reactor: Reactor, client: socket.socket) -> None:
        self._proxy = proxy
        self._reactor = reactor
        self._buffer = proxy.buffer
        self._client = client
        self._upstream: socket.socket | None = None
        self._backend: Backend | None = None
        self._timer: Timer | None = None
        self._up_pending = self._down_pending = b""
        self._up_eof = self._down_eof = False
        self._client_mask = self._upstream_mask = 0
        #: The instance has sent bytes since the client last did.
        self._answered = False
        #: Bytes have reached the current instance's connection / come back from it.
        self._delivered = self._heard = False
        #: Not to be moved to another instance (not HTTP/1, or upgraded).
        self._tunnel = False
        self._start()

    # -- until the instance is connected -------------------------------------------

    def _start(self) -> None:
        """Read what the client says first, then connect (a subclass may read more first)."""
        # Most clients have sent their request by the time they are accepted.
        first = self._recv_first()
        if first is None:
            self._reactor.register(self._client.fileno(), _IN, self._first_readable)
            self._timer = self._reactor.call_later(FIRST_BYTES_WAIT, self._first_timeout)
        else:
            self._begin(first)

    def _recv_first(self) -> bytes | None:
        """The client's first bytes; None if it has sent nothing yet, b"" if it has left."""
        try:
            size = self._client.recv_into(self._buffer)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""
        return bytes(self._buffer[:size])

    def _first_readable(self, mask: int) -> None:
        first = self._recv_first()
        if first is not None:
            assert self._timer is not None
            self._timer.cancel()
            self._reactor.unregister(self._client.fileno())
            self._begin(first)

    def _first_timeout(self) -> None:
        self._reactor.unregister(self._client.fileno())
        self._begin(None)

    def _begin(self, first: bytes | None) -> None:
        """Hand the connection to the current instance; ``first`` is None after a timeout."""
        if first == b"":  # the client left without a word
            self._client.close()
            return
        if first is None or not _REQUEST_LINE.match(first):
            self._tunnel = True
        backend = self._proxy.pick()
        if backend is None:
            Refusal(self._reactor, self._client, NOT_SERVING)
            return
        self._connect(backend, first or b"")

    def _connect(self, backend: Backend, pending: bytes) -> None:
        """Connect to ``backend`` (acquired for this connection) and send it ``pending``; from
        then on bytes are spliced both ways. The client must not be registered yet."""
        self._backend = backend
        self._answered = self._delivered = self._heard = False
        upstream = self._upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM | _NONBLOCK)
        _nodelay(upstream)
        code = upstream.connect_ex((backend.host, backend.port))
        if code not in (0, errno.EINPROGRESS):
            self._fail()
            return
        # On loopback the handshake is done by the time connect() returns, so
        # the first bytes go at once, without a trip through epoll; if not,
        # they wait for the socket to become writable like any other bytes,
        # and a refusal shows up as an error on sending them (a 502).
        if pending:
            try:
                sent = upstream.send(pending)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._fail()
                return
            if sent:
                self._delivered = True
                pending = pending[sent:]
        self._up_pending = pending
        # Registered with their final masks straight away: one epoll_ctl each.
        self._client_mask = 0 if pending else _IN
        self._upstream_mask = _IN | _OUT if pending else _IN
        self._reactor.register(self._client.fileno(), self._client_mask, self._client_event)
        self._reactor.register(upstream.fileno(), self._upstream_mask, self._upstream_event)

    def _fail(self) -> None:
        """The instance refused: answer 502 (the client has had nothing from it)."""
        assert self._upstream is not None
        if self._upstream.fileno() >= 0:
            self._reactor.forget(self._upstream.fileno())
            self._upstream.close()
        with contextlib.suppress(OSError):  # registered once connected
            self._reactor.unregister(self._client.fileno())
        self._release()
        Refusal(self._reactor, self._client, BAD_GATEWAY)

    def _move(self, request: bytes) -> None:
        """Hand a kept-alive connection, between two requests, to the current instance."""
        assert self._upstream is not None
        self._reactor.forget(self._upstream.fileno())
        self._upstream.close()
        self._upstream = None
        self._release()
        self._reactor.unregister(self._client.fileno())
        self._client_mask = self._upstream_mask = 0
        self._begin(request)

    # -- splicing ----------------------------------------------------------------

    def _client_event(self, mask: int) -> None:
        if mask & _OUT:
            self._flush(up=False)
        if mask & _IN_OR_GONE and self._client_mask & _IN:
            self._pump(up=True)
        elif mask & _ERR:
            self.close()

    def _upstream_event(self, mask: int) -> None:
        if mask & _OUT:
            self._flush(up=True)
        if mask & _IN_OR_GONE and self._upstream_mask & _IN:
            self._pump(up=False)
        elif mask & _ERR:
            self._upstream_failed()

    def _pump(self, up: bool) -> None:
        """Move what ``up``'s source has to its destination."""
        src = self._client if up else self._upstream
        assert src is not None
        try:
            size = src.recv_into(self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            if up:
                self.close()
            else:
                self._upstream_failed()
            return
        if size:
            if up:
                if self._answered:
                    self._answered = False
                    if (
                        self._backend is not self._proxy.current
                        and not self._tunnel
                        and not self._down_pending
                        and _REQUEST_LINE.match(self._buffer[:size])
                    ):
                        self._move(bytes(self._buffer[:size]))
                        return
            elif not self._answered:
                self._answered = self._heard = True
                if self._buffer[:13] in _SWITCHING_PROTOCOLS:
                    self._tunnel = True
            self._forward(self._buffer[:size], up)
            return
        if up:
            self._up_eof = True
        else:
            self._down_eof = True
        self._maybe_finish(up)
        self._update()

    def _upstream_failed(self) -> None:
        """The instance's connection broke: a 502 if the client has had nothing from it yet."""
        if not self._heard and self._client.fileno() >= 0:
            self._fail()
        else:
            self.close()

    def _forward(self, data: bytes | memoryview, up: bool) -> None:
        dst = self._upstream if up else self._client
        assert dst is not None
        try:
            sent = dst.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            if up and not self._delivered:  # a fast-open connect refused
                self._fail()
            else:
                self.close()
            return
        if up:
            self._delivered = True
        if sent == len(data):
            return
        # The receiver is slow: keep the rest (copied: the read buffer is
        # shared) and stop reading this direction until it is written.
        rest = bytes(data[sent:])
        if up:
            self._up_pending = rest
        else:
            self._down_pending = rest
        self._update()

    def _flush(self, up: bool) -> None:
        dst = self._upstream if up else self._client
        pending = self._up_pending if up else self._down_pending
        assert dst is not None
        if not pending:
            return
        try:
            sent = dst.send(pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            if up and not self._delivered:
                self._fail()
            else:
                self.close()
            return
        if up:
            self._delivered = True
            self._up_pending = pending[sent:]
        else:
            self._down_pending = pending[sent:]
        if sent == len(pending):
            self._maybe_finish(up)
            self._update()

    def _maybe_finish(self, up: bool) -> None:
        """Pass on an end of stream once everything before it is written."""
        if up and self._up_eof and not self._up_pending:
            if not self._down_done():  # else closing both at once says it
                assert self._upstream is not None
                with contextlib.suppress(OSError):
                    self._upstream.shutdown(socket.SHUT_WR)
        elif not up and self._down_eof and not self._down_pending:
            self._release()  # the instance has said all it will say
            if not self._up_done():
                with contextlib.suppress(OSError):
                    self._client.shutdown(socket.SHUT_WR)

    def _up_done(self) -> bool:
        return self._up_eof and not self._up_pending

    def _down_done(self) -> bool:
        return self._down_eof and not self._down_pending

    def _update(self) -> None:
        """Bring both epoll masks in line with the state; close once both ways are done."""
        if self._upstream is None or self._client.fileno() < 0 or self._upstream.fileno() < 0:
            return
        if self._up_done() and self._down_done():
            self.close()
            return
        client_mask = (0 if self._up_eof or self._up_pending else _IN) | (_OUT if self._down_pending else 0)
        upstream_mask = (0 if self._down_eof or self._down_pending else _IN) | (
            _OUT if self._up_pending else 0
        )
        if client_mask != self._client_mask:
            self._client_mask = client_mask
            self._reactor.modify(self._client.fileno(), client_mask)
        if upstream_mask != self._upstream_mask:
            self._upstream_mask = upstream_mask
            self._reactor.modify(self._upstream.fileno(), upstream_mask)

    def _release(self) -> None:
        if self._backend is not None:
            self._backend.release()
            self._backend = None

    def close(self) -> None:
        if self._client.fileno() >= 0:
            self._reactor.forget(self._client.fileno())
            self._client.close()
        if self._upstream is not None and self._upstream.fileno() >= 0:
            self._reactor.forget(self._upstream.fileno())
            self._upstream.close()
        self._release()
