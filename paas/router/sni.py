"""The server name a TLS client asks for, read from its ClientHello (RFC 8446 §4.1.2,
RFC 6066 §3) without terminating TLS: the router passes the bytes on untouched.

A ClientHello may span TCP segments and TLS records (RFC 8446 §5.1 lets a handshake
message be fragmented across records; one with a post-quantum key share is ~2 KB), so
:class:`Hello` reassembles it, up to :data:`MAX_HELLO` bytes, before anything is routed.
"""

from __future__ import annotations

import struct

from paas.router.heads import Head, Piece

HANDSHAKE, CLIENT_HELLO, SERVER_NAME, HOST_NAME = 0x16, 0x01, 0x0000, 0x00
#: The most the router reads before the ClientHello is whole, records included (what nginx's
#: ssl_preread reads by default, preread_buffer_size); real ones take 0.2-2 KB.
MAX_HELLO = 16 * 1024
#: The largest TLS record fragment (RFC 8446 §5.1).
MAX_RECORD = 2**14


class BadHello(ValueError):
    """Not a ClientHello the router can read (``status`` 431 when it is too large)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


class Hello:
    """A TLS connection's first bytes until its ClientHello is whole.

    :meth:`feed` returns nothing while the hello is incomplete, then one piece: every byte
    received (to pass on as it came) with the :class:`Head` naming the server (``last``:
    nothing after it is routed), or a refused Head; later bytes come back as they are (after
    a refusal, not at all).
    """

    def __init__(self, limit: int = MAX_HELLO) -> None:
        self._limit = limit
        self._received = bytearray()
        self._at = 0  # where the first record not yet read whole starts
        self._message = bytearray()  # the handshake bytes of the records read
        self._done = False

    @property
    def partial(self) -> bool:
        return bool(self._received) and not self._done

    @property
    def in_body(self) -> bool:
        return self._done  # after the hello, everything belongs to the connection

    def feed(self, data: bytes | memoryview) -> list[Piece]:
        if self._done:
            return [(None, data)] if self._received else []  # (nothing more is read once refused)
        self._received += data
        try:
            name = self._read()
        except BadHello as e:
            self._done, self._received = True, bytearray()
            return [(Head(None, last=True, status=e.status, reason=str(e)), b"")]
        if name is None:
            return []
        self._done = True
        return [(Head(name or None, last=True), bytes(self._received))]

    def _read(self) -> str | None:
        """The server name once the hello is whole ("" if it names none), None until then."""
        received, limit = self._received, self._limit
        while True:
            at = self._at
            have = len(received) - at
            if have >= 1 and received[at] != HANDSHAKE:
                raise BadHello(f"a TLS record of type {received[at]} before the ClientHello is whole")
            if have >= 2 and received[at + 1] != 3:
                raise BadHello("not a TLS record")
            if have < 5:
                return None
            (length,) = struct.unpack_from("!H", received, at + 3)
            if not 0 < length <= MAX_RECORD:
                raise BadHello(f"a TLS record of {length} bytes")
            end = at + 5 + length
            if end > limit:
                raise BadHello(f"the ClientHello takes more than {limit} bytes", status=431)
            if len(received) < end:
                return None
            self._message += received[at + 5 : end]
            self._at = end
            if len(self._message) < 4:
                continue
            if self._message[0] != CLIENT_HELLO:
                raise BadHello("the first handshake message is not a ClientHello")
            size = int.from_bytes(self._message[1:4], "big")
            if 4 + size > limit:
                raise BadHello(f"the ClientHello takes more than {limit} bytes", status=431)
            if len(self._message) >= 4 + size:
                return server_name(bytes(self._message[4 : 4 + size])) or ""


def server_name(hello: bytes) -> str | None:
    """The SNI host name (lower-case) in a ClientHello's body, None when it names none."""
    try:
        at = 2 + 32  # legacy version, random
        at = _skip(hello, at, 1)  # legacy session id
        at = _skip(hello, at, 2)  # cipher suites
        at = _skip(hello, at, 1)  # legacy compression methods
        if at == len(hello):
            return None  # no extensions (TLS 1.2 allows it)
        extensions = _vector(hello, at, 2)
        if at + 2 + len(extensions) != len(hello):
            raise BadHello("the ClientHello's extensions do not end where it does")
        at = 0
        while at < len(extensions):
            (kind,) = struct.unpack_from("!H", extensions, at)
            data = _vector(extensions, at + 2, 2)
            if kind == SERVER_NAME:
                return _host_name(data)
            at += 4 + len(data)
    except struct.error:
        raise BadHello("the ClientHello ends inside a field") from None
    return None


def _vector(data: bytes, at: int, prefix: int) -> bytes:
    """The variable-length vector at ``at`` whose length takes ``prefix`` bytes (RFC 8446 §3.4)."""
    if at + prefix > len(data):
        raise BadHello("the ClientHello ends inside a field")
    size = int.from_bytes(data[at : at + prefix], "big")
    if at + prefix + size > len(data):
        raise BadHello("a ClientHello field is longer than the ClientHello")
    return data[at + prefix : at + prefix + size]


def _skip(data: bytes, at: int, prefix: int) -> int:
    return at + prefix + len(_vector(data, at, prefix))


def _host_name(extension: bytes) -> str | None:
    names = _vector(extension, 0, 2)
    at = 0
    while at < len(names):
        kind = names[at]
        name = _vector(names, at + 1, 2)
        if kind == HOST_NAME:
            try:
                return name.decode("ascii").lower().rstrip(".") or None
            except UnicodeDecodeError:
                return None
        at += 3 + len(name)
    return None
