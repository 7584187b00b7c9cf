"""A client's bytes on the router's plain-HTTP port cut into requests, each routed by its own
``Host``: bytes in, pieces out, no sockets (tested as h11 is, by feeding it).

A request's head is read whole by h11 before any of it is passed on (a slow client costs
the router a buffer, never an app's worker); its body is only measured, never parsed: a
``Content-Length`` is counted down, a chunked body is walked by h11 to find where it ends,
and where the next request starts is where the next routing decision is made. After a
request that asks to switch protocols (``Upgrade``, ``CONNECT``) or to close the connection
nothing more is routed: what follows belongs to the app that answers it.
"""

from __future__ import annotations

import re
from typing import NamedTuple, TypeAlias

import h11

#: The largest request head the router reads (nginx's default, 4 x 8 KiB buffers); more is a 431.
MAX_HEAD = 32 * 1024

#: A stand-in head that puts a fresh h11 parser at the start of a chunked body.
_CHUNKED = b"POST / HTTP/1.1\r\nHost: body\r\nTransfer-Encoding: chunked\r\n\r\n"

_BLANK_LINES = re.compile(rb"[\r\n]+")
_CRLF = b"\r\n"
#: What h11 quotes of the client's bytes at the end of an error (not repeated back).
_QUOTED = re.compile(r":? *(?:bytearray\()?b['\"].*$", re.DOTALL)


class Head(NamedTuple):
    """What a request (or a TLS connection) is routed by.

    ``status`` is non-zero when the router answers it itself instead (400, 431, 501, 505:
    the HTTP status; for a TLS connection, a decode error), ``reason`` then says why in words.
    ``last``: nothing after this request is routed (it switches protocols or closes).
    """

    host: str | None
    last: bool = False
    status: int = 0
    reason: str = ""


#: Bytes of one request: its head (with the Head), or more of its body (None).
Piece: TypeAlias = tuple[Head | None, bytes | memoryview]


def host_name(value: str) -> str | None:
    """The host name a ``Host`` value names: no port, lower-case, no trailing dot."""
    value = value.strip()
    if value.startswith("["):  # an IPv6 literal
        return value.split("]", 1)[0] + "]"
    name, colon, port = value.rpartition(":")
    if colon and (not port or port.isdigit()):
        value = name
    return value.lower().rstrip(".") or None


class Requests:
    """The requests in one client connection's bytes.

    :meth:`feed` takes what the client sent and returns it cut into pieces: a piece with a
    :class:`Head` opens a request (its head, complete), a piece without one continues the
    request before it (body bytes, possibly a view of ``data``: use it before the next feed).
    The bytes of an incomplete head are kept until it is complete (:attr:`partial`).
    """

    def __init__(self, max_head: int = MAX_HEAD) -> None:
        self._max_head = max_head
        self._head = bytearray()  # an incomplete head's bytes so far
        self._parser: h11.Connection | None = None  # reading a head, or a chunked body
        self._chunked = False
        self._left = 0  # bytes left of a Content-Length body
        self._through = False  # nothing more is routed: the rest is one piece
        self._broken = False  # refused: nothing more is read

    @property
    def partial(self) -> bool:
        """Whether part of a head has arrived and the rest has not."""
        return bool(self._head)

    @property
    def in_body(self) -> bool:
        """Whether the last request read is not whole yet (or everything now belongs to it)."""
        return bool(self._left or self._chunked or self._through)

    def feed(self, data: bytes | memoryview) -> list[Piece]:
        view = memoryview(data)
        pieces: list[Piece] = []
        at, end = 0, len(view)
        while at < end and not self._broken:
            if self._through:
                pieces.append((None, view[at:]))
                break
            if self._left:
                size = min(self._left, end - at)
                self._left -= size
            elif self._chunked:
                size = self._chunk(view[at:])
            else:
                at = self._read_head(view, at, pieces)
                continue
            pieces.append((None, view[at : at + size]))
            at += size
        return pieces

    def _read_head(self, view: memoryview, at: int, pieces: list[Piece]) -> int:
        """Feed h11 the head starting at ``at`` (or continued there); where the next piece starts."""
        if not self._head and view[at] in _CRLF:  # blank lines before a request are ignored (RFC 9112 §2.2)
            blank = _BLANK_LINES.match(view, at)
            assert blank is not None
            return blank.end()
        parser = self._parser or h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_head)
        # Never more than the largest head: one not whole by then is too large.
        fed = bytes(view[at : at + self._max_head - len(self._head)])
        parser.receive_data(fed)
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError as e:
            return self._refuse(view, pieces, e.error_status_hint, _QUOTED.sub("", str(e)))
        if event is h11.NEED_DATA:
            self._parser = parser
            self._head += fed
            if len(self._head) == self._max_head:
                return self._refuse(view, pieces, 431, f"its head is larger than {self._max_head} bytes")
            return at + len(fed)
        assert isinstance(event, h11.Request)
        used = len(fed) - len(parser.trailing_data[0])
        self._parser = None
        if self._head:
            head = bytes(self._head) + fed[:used]
            self._head = bytearray()
        else:
            head = fed[:used]
        try:
            host, chunked, length, last = _framing(event)
        except _Refused as e:
            return self._refuse(view, pieces, e.status, str(e))
        pieces.append((Head(host, last), head))
        if last:
            self._through = True
        elif chunked:
            self._chunked = True
            self._parser = h11.Connection(h11.SERVER)
            self._parser.receive_data(_CHUNKED)
            self._parser.next_event()
        else:
            self._left = length
        return at + used

    def _chunk(self, view: memoryview) -> int:
        """How many of these bytes belong to the chunked body being read."""
        assert self._parser is not None
        self._parser.receive_data(bytes(view))
        try:
            while (event := self._parser.next_event()) is not h11.NEED_DATA:
                if isinstance(event, h11.EndOfMessage):
                    self._chunked, rest = False, len(self._parser.trailing_data[0])
                    self._parser = None
                    return len(view) - rest
        except h11.RemoteProtocolError:
            # The head went on already: the app that has it reads (and refuses) the rest.
            self._chunked, self._through, self._parser = False, True, None
        return len(view)

    def _refuse(self, view: memoryview, pieces: list[Piece], status: int, reason: str) -> int:
        self._broken, self._parser, self._head = True, None, bytearray()
        pieces.append((Head(None, last=True, status=status, reason=reason), b""))
        return len(view)


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _framing(request: h11.Request) -> tuple[str | None, bool, int, bool]:
    """(host, chunked, content length, last) of a request h11 read."""
    if request.http_version not in (b"1.0", b"1.1"):
        raise _Refused(505, f"it is HTTP/{request.http_version.decode()}, not HTTP/1.1")
    chunked = upgrade = close = keep_alive = False
    length: int | None = None
    host = None
    for raw_name, value in request.headers.raw_items():
        name = raw_name.lower()
        if name == b"host":
            host = host_name(value.decode("latin-1"))  # h11 checked there is at most one
        elif name == b"transfer-encoding":
            chunked = True  # h11 lets only "chunked" through
        elif name == b"content-length":
            length = int(value)  # h11 checked it is one number
        elif name == b"upgrade":
            upgrade = True
        elif name == b"connection":
            tokens = {token.strip() for token in value.lower().split(b",")}
            close |= b"close" in tokens
            keep_alive |= b"keep-alive" in tokens
    if chunked and length is not None:
        # Two framings, and the app might go by the other one (RFC 9112 §6.1 allows refusing).
        raise _Refused(400, "it has both Transfer-Encoding and Content-Length")
    old = request.http_version == b"1.0"
    last = upgrade or close or request.method == b"CONNECT" or (old and not keep_alive)
    return host, chunked, length or 0, last
