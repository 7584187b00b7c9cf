"""One client connection through the router: read until what it routes on is whole, then
spliced to the app it chose by the runtime proxy's data path, each further request of a
kept-alive HTTP connection routed by its own ``Host``.

A request for another app than the one the connection is spliced to (or one the router
answers itself) is held, nothing after it read, until the first app has answered what it was
sent: that app is told no more requests come (a half-close, as a client closing would), its
answers go on to the client, and when it closes its side the held request goes to its own
app on a new upstream connection. No response is parsed, so answers keep their framing (HEAD,
1xx, 204, chunked, up to a close) and an upstream connection only ever carries one client's
requests.

That is only right if the first app answered every request it was sent, which the router
knows without reading answers when the client waited for each answer before it asked again
(as browsers and proxies do). A client that sent a request before the app had answered the
one before it (pipelining) could be handed one app's answer for another request if that app
closed with a request unanswered: such a connection is not moved but closed once its app has
answered, and the client asks again on a new one (RFC 9112 §9.3.2).
"""

from __future__ import annotations

import select
from typing import TYPE_CHECKING

from paas.router.heads import Piece
from paas_runtime.proxy import Backend, Connection, Refusal

if TYPE_CHECKING:
    from paas.router.server import Router

_IN = select.EPOLLIN


class RoutedConnection(Connection):
    __slots__ = ("_reader", "_held", "_overlapped", "_stopped")

    _proxy: Router

    # -- until a head is whole -------------------------------------------------------

    def _start(self) -> None:
        self._reader = self._proxy.reader()
        #: Requests read for another backend, waiting for this one to finish.
        self._held: list[Piece] | None = None
        #: A request went to the app before it had answered the one before (pipelined).
        self._overlapped = False
        #: The client is no longer read (:meth:`_stop_reading`).
        self._stopped = False
        # (self._answered, the proxy's: the app has sent bytes since the last request was whole.)
        pieces = self._receive()  # most clients have sent their request by the time they are accepted
        if pieces is None:
            self._reactor.register(self._client.fileno(), _IN, self._opening_readable)
            self._proxy.deadlines.start(self)
        else:
            self._route(pieces)

    def _receive(self) -> list[Piece] | None:
        """What a new connection has sent, once a head is whole ([]: it left); None until then."""
        try:
            size = self._client.recv_into(self._buffer)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return []
        if not size:
            return []
        return self._reader.feed(self._buffer[:size]) or None

    def _opening_readable(self, mask: int) -> None:
        pieces = self._receive()
        if pieces is not None:
            self._disarm()
            self._reactor.unregister(self._client.fileno())
            self._route(pieces)

    def _opening_timeout(self) -> None:
        self._reactor.unregister(self._client.fileno())
        answer = self._proxy.timed_out(self._reader.partial)
        if answer is None:
            self._client.close()
        else:
            Refusal(self._reactor, self._client, answer)

    def _route(self, pieces: list[Piece]) -> None:
        """Connect to the backend the first piece's head chooses and send it what is for it;
        hold the rest. The client must not be registered."""
        if not pieces:  # the client left before saying where to
            self._client.close()
            return
        head = pieces[0][0]
        assert head is not None
        backend = self._proxy.choose(head)
        if isinstance(backend, bytes):
            Refusal(self._reactor, self._client, backend)
            return
        count, heads = self._split(pieces, backend, 1)
        self._overlapped |= heads > 1
        backend.acquire()
        self._connect(backend, bytes(_join(pieces[:count])))
        if self._backend is not backend:  # it refused: a 502
            return
        if count < len(pieces):
            self._hold(pieces[count:], answered=False)
        else:
            self._time_head()

    def _split(self, pieces: list[Piece], backend: Backend | None, chosen: int = 0) -> tuple[int, int]:
        """How many of the pieces, from the first, go to ``backend`` (the first ``chosen`` do:
        a head that chose it, or none), and how many requests they open; after one that is
        ``last`` the connection is a tunnel."""
        count = heads = 0
        for head, _ in pieces:
            if head is not None:
                if count >= chosen and self._proxy.choose(head) is not backend:
                    break
                heads += 1
                self._tunnel = head.last
            count += 1
        return count, heads

    # -- spliced ---------------------------------------------------------------------

    def _pump(self, up: bool) -> None:
        if not up or self._tunnel:
            super()._pump(up)
            return
        try:
            size = self._client.recv_into(self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not size:  # the client is done (an incomplete head is dropped)
            self._up_eof = True
            self._maybe_finish(True)
            self._update()
            return
        pieces = self._reader.feed(self._buffer[:size])
        if self._reader.partial or self in self._proxy.deadlines:
            self._time_head(restart=bool(pieces))
        answered = self._answered  # since the request before these bytes was whole
        count, heads = self._split(pieces, self._backend)
        if count:
            # A request sent before its predecessor was answered: with it, right after its
            # end, or with no answer to it yet.
            if heads and (heads > 1 or pieces[0][0] is None or not answered):
                self._overlapped = True
            if count < len(pieces) or not self._reader.in_body:
                self._answered = False  # the last request sent is whole: what comes now answers it
            self._forward(_join(pieces[:count]), True)
        if count < len(pieces) and self._upstream is not None and self._upstream.fileno() >= 0:
            self._hold(pieces[count:], answered=answered and not count)  # (unless forwarding failed)

    def _hold(self, pieces: list[Piece], answered: bool) -> None:
        """Keep requests for another backend until this one has answered what it was sent, if
        it answered each request before the next (``answered``: the last too); else drop them:
        the connection ends once the app has answered."""
        self._disarm()
        if answered and not self._overlapped:
            self._held = [(head, bytes(data)) for head, data in pieces]
        self._stop_reading()

    def _stop_reading(self) -> None:
        """Read the client no more and send the app no more: it is told so once it has all it
        was sent (a half-close); when it has answered and closed, :meth:`_end`."""
        self._stopped = self._up_eof = True
        if self._down_eof and not self._down_pending:
            self._end()
            return
        self._maybe_finish(True)
        self._update()

    def _maybe_finish(self, up: bool) -> None:
        if not up and self._stopped and self._down_eof and not self._down_pending:
            self._end()
        else:
            super()._maybe_finish(up)

    def _end(self) -> None:
        """The app has said all it will: the held request goes to its app on a new connection;
        with none, the client gets its end of stream and what it sent since is read and dropped
        (closing with it unread would reset the connection under the answers)."""
        assert self._upstream is not None
        self._reactor.forget(self._upstream.fileno())
        self._upstream.close()
        self._upstream = None
        self._release()
        self._reactor.unregister(self._client.fileno())
        self._disarm()
        held, self._held = self._held, None
        if held is None:
            Refusal(self._reactor, self._client, b"")
            return
        self._client_mask = self._upstream_mask = 0
        self._up_eof = self._down_eof = self._stopped = False
        self._route(held)

    # -- a head's deadline -----------------------------------------------------------

    def _time_head(self, restart: bool = False) -> None:
        """Give a head that has started arriving the router's head timeout to be whole."""
        deadlines = self._proxy.deadlines
        if not self._reader.partial:
            deadlines.stop(self)
        elif restart or self not in deadlines:
            deadlines.start(self)

    def expired(self) -> None:
        """The head being read is not whole in time: a new connection gets the router's
        answer; a kept-alive one ends once its app has answered what it had (an answer
        from the router could land in the middle of the app's)."""
        if self._upstream is None:
            self._opening_timeout()
        elif self._client.fileno() >= 0 and not self._stopped:
            self._stop_reading()

    def _disarm(self) -> None:
        self._proxy.deadlines.stop(self)

    def _fail(self) -> None:
        self._disarm()
        super()._fail()

    def close(self) -> None:
        self._disarm()
        super().close()


def _join(pieces: list[Piece]) -> bytes | memoryview:
    return pieces[0][1] if len(pieces) == 1 else b"".join(data for _, data in pieces)
