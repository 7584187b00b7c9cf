"""The server name a TLS client asks for, read from its ClientHello (RFC 8446 §4.1.2,
RFC 6066 §3) without terminating TLS: the router passes the bytes on untouched."""

from __future__ import annotations

import struct

HANDSHAKE, CLIENT_HELLO, SERVER_NAME, HOST_NAME = 0x16, 0x01, 0x0000, 0x00


def is_tls(first: bytes) -> bool:
    """Whether a connection's first bytes open a TLS handshake record."""
    return len(first) >= 3 and first[0] == HANDSHAKE and first[1] == 0x03


def server_name(first: bytes) -> str | None:
    """The SNI host name of the ClientHello in ``first`` (lower-case), or None when there is
    none, it is not a ClientHello or the hello did not arrive whole in these bytes."""
    try:
        if not is_tls(first):
            return None
        (record,) = struct.unpack_from("!H", first, 3)
        hello = first[5 : 5 + record]
        if len(hello) < record or hello[0] != CLIENT_HELLO:
            return None
        size = int.from_bytes(hello[1:4], "big")
        body = hello[4 : 4 + size]
        at = 2 + 32  # client version, random
        at += 1 + body[at]  # session id
        (suites,) = struct.unpack_from("!H", body, at)
        at += 2 + suites
        at += 1 + body[at]  # compression methods
        (total,) = struct.unpack_from("!H", body, at)
        at += 2
        end = at + total
        while at + 4 <= end:
            kind, length = struct.unpack_from("!HH", body, at)
            at += 4
            if kind == SERVER_NAME:
                return _host_name(body[at : at + length])
            at += length
    except (struct.error, IndexError):
        return None
    return None


def _host_name(extension: bytes) -> str | None:
    (total,) = struct.unpack_from("!H", extension, 0)
    at, end = 2, 2 + total
    while at + 3 <= end:
        kind = extension[at]
        (length,) = struct.unpack_from("!H", extension, at + 1)
        name = extension[at + 3 : at + 3 + length]
        if kind == HOST_NAME and len(name) == length:
            try:
                return name.decode("ascii").lower().rstrip(".")
            except UnicodeDecodeError:
                return None
        at += 3 + length
    return None
