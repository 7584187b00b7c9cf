"""The router's pure cores, fed as h11 is tested: request heads cut from a client's bytes
(:mod:`paas.router.heads`) and ClientHellos reassembled from TLS records and TCP segments
(:mod:`paas.router.sni`), whole, one byte at a time, split across records, malformed,
truncated and too large. No sockets."""

from __future__ import annotations

import os
import random
import ssl
from pathlib import Path

import pytest

from helpers import tls_records as records
from paas.router.heads import MAX_HEAD, Head, Requests, host_name
from paas.router.sni import MAX_HELLO, MAX_RECORD, Hello
from paas_https.certs import self_signed


def _pieces(reader: Requests | Hello, data: bytes, step: int | None = None) -> list[tuple[Head | None, bytes]]:
    """What ``reader`` makes of ``data`` fed whole or ``step`` bytes at a time, each request's
    bytes joined (pieces without a head continue the one before)."""
    step = step or len(data)
    return _fed(reader, [data[at : at + step] for at in range(0, len(data), step)])


def _fed(reader: Requests | Hello, chunks: list[bytes]) -> list[tuple[Head | None, bytes]]:
    joined: list[tuple[Head | None, bytes]] = []
    for chunk in chunks:
        for head, piece in reader.feed(chunk):
            if head is None and joined:
                joined[-1] = (joined[-1][0], joined[-1][1] + bytes(piece))
            else:
                joined.append((head, bytes(piece)))
    return joined


# -- HTTP request heads ------------------------------------------------------------------

GET_A = b"GET /a HTTP/1.1\r\nHost: A.localhost:8080\r\n\r\n"
POST_B = b"POST /b HTTP/1.1\r\nHost: b.localhost\r\nContent-Length: 5\r\n\r\nhello"
# A chunked body that holds what looks like a request for another host: it is body, not a request.
SMUGGLED = b"GET / HTTP/1.1\r\nHost: evil\r\n\r\n"
CHUNKED_C = (b"POST /c HTTP/1.1\r\nHost: c.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
             + b"%x;ext=1\r\n%s\r\n0\r\nTrailer: t\r\n\r\n" % (len(SMUGGLED), SMUGGLED))
HEAD_D = b"HEAD /d HTTP/1.1\r\nhost: d.localhost.\r\nExpect: 100-continue\r\n\r\n"
UPGRADE_E = b"GET /ws HTTP/1.1\r\nHost: e.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
AFTER_UPGRADE = b"\x81\x05hello GET / HTTP/1.1\r\nHost: b.localhost\r\n\r\n"
STREAM = GET_A + POST_B + b"\r\n" + CHUNKED_C + HEAD_D + UPGRADE_E + AFTER_UPGRADE


@pytest.mark.parametrize("step", [None, 1, 2, 7, 64])
def test_requests_are_cut_the_same_however_the_bytes_arrive(step):
    pieces = _pieces(Requests(), STREAM, step)
    assert [(head.host, head.last) for head, _ in pieces if head] == [
        ("a.localhost", False), ("b.localhost", False), ("c.localhost", False),
        ("d.localhost", False), ("e.localhost", True),
    ]
    # Each request's bytes exactly, the blank line between two requests dropped, and after
    # the upgrade everything belongs to it, even what looks like a request.
    assert [data for _, data in pieces] == [GET_A, POST_B, CHUNKED_C, HEAD_D, UPGRADE_E + AFTER_UPGRADE]


def test_no_byte_of_a_head_is_given_before_it_is_whole():
    requests = Requests()
    for byte in range(len(GET_A) - 1):
        assert requests.feed(GET_A[byte : byte + 1]) == []
        assert requests.partial
    ((head, data),) = requests.feed(GET_A[-1:])
    assert head == Head("a.localhost") and data == GET_A and not requests.partial


def test_a_body_is_passed_on_as_it_comes_and_the_next_head_read_after_it():
    requests = Requests()
    assert _pieces(requests, POST_B[:-3]) == [(Head("b.localhost"), POST_B[:-3])]
    assert [(head, bytes(data)) for head, data in requests.feed(b"llo" + GET_A)] == [
        (None, b"llo"), (Head("a.localhost"), GET_A),
    ]


@pytest.mark.parametrize(("head", "last"), [
    (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n", True),
    (b"GET / HTTP/1.0\r\nHost: a\r\n\r\n", True),
    (b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\nHost: a\r\nUpgrade: x\r\nConnection: keep-alive\r\n\r\n", True),
    (b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", True),
    (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", False),
])
def test_what_follows_a_request_that_closes_or_switches_protocols_is_not_routed(head, last):
    pieces = _pieces(Requests(), head + GET_A, 1)
    if last:
        assert pieces == [(Head("a", True), head + GET_A)]
    else:
        assert pieces == [(Head("a"), head), (Head("a.localhost"), GET_A)]


@pytest.mark.parametrize(("value", "host"), [
    ("App.Localhost", "app.localhost"), ("app.localhost:8080", "app.localhost"), ("app.localhost.", "app.localhost"),
    ("[::1]:8080", "[::1]"), ("", None), (":80", None), ("a:b", "a:b"),
])
def test_host_names(value, host):
    assert host_name(value) == host


def test_a_request_without_a_host_is_given_to_the_router_to_answer():
    assert _pieces(Requests(), b"GET / HTTP/1.0\r\n\r\n") == [(Head(None, True), b"GET / HTTP/1.0\r\n\r\n")]


@pytest.mark.parametrize(("data", "status", "reason"), [
    (b"GET / HTTP/1.1\r\nHost a\r\n\r\n", 400, "illegal header line"),
    (b"GET / HTTP/1.1\r\n\r\n", 400, "Missing mandatory Host: header"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "Found multiple Host: headers"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
     "it has both Transfer-Encoding and Content-Length"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400,
     "conflicting Content-Length headers"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, "bad Content-Length"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
     "Only Transfer-Encoding: chunked is supported"),
    (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "illegal request line"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "it is HTTP/2.0, not HTTP/1.1"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "illegal request line"),
])
@pytest.mark.parametrize("step", [None, 1])
def test_a_malformed_head_is_refused_once_saying_why_and_nothing_after_it_is_read(data, status, reason, step):
    requests = Requests()
    pieces = _pieces(requests, GET_A + data + GET_A, step)
    assert pieces == [(Head("a.localhost"), GET_A), (Head(None, True, status, reason), b"")]
    assert requests.feed(GET_A) == []


def test_a_head_larger_than_the_bound_is_refused_as_soon_as_it_is_larger():
    # A head of exactly MAX_HEAD bytes is read...
    filler = b"X-Filler: " + b"x" * (MAX_HEAD - len(GET_A) - 12) + b"\r\n"
    whole = GET_A[:-2] + filler + b"\r\n"
    assert len(whole) == MAX_HEAD
    assert _pieces(Requests(), whole) == [(Head("a.localhost"), whole)]
    # ... one that is not whole after MAX_HEAD bytes is refused then, not later.
    endless = GET_A[:-2] + b"Cookie: " + b"c" * (2 * MAX_HEAD)
    refused = [(Head(None, True, 431, f"its head is larger than {MAX_HEAD} bytes"), b"")]
    for step in (1024, 1000):
        requests = Requests()
        for at in range(0, MAX_HEAD - 1, step):
            assert requests.feed(endless[at : min(at + step, MAX_HEAD - 1)]) == []
        assert requests.feed(endless[MAX_HEAD - 1 : MAX_HEAD + 5]) == refused
    assert _pieces(Requests(), endless) == refused
    # The bound is per head: bodies and many heads in a row are any size.
    assert len(_pieces(Requests(), GET_A * 2000)) == 2000


def test_a_malformed_chunked_body_goes_with_its_request():
    """Its head went on already: the rest goes to the same app, which refuses it itself."""
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + GET_A
    assert _pieces(Requests(), data, 1) == [(Head("a"), data)]


@pytest.mark.parametrize(("data", "status", "reason"), [
    # What two parsers may read differently (request smuggling) is refused, not guessed at.
    (b"GET / HTTP/1.1\r\nHost: a\x00.localhost\r\n\r\n", 400, "illegal header line"),
    (b"GET / HTTP/1.1\r\nHost : b.localhost\r\n\r\n", 400, "illegal header line"),
    (b"GET / HTTP/1.1\r\n Host: b.localhost\r\n\r\n", 400, "continuation line at start of headers"),
    (b"GET / HTTP/1.1\r\nHost: a\rHost: b\r\n\r\n", 400, "illegal header line"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", 400, "illegal header line"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 501,
     "Only Transfer-Encoding: chunked is supported"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n", 501,
     "Only Transfer-Encoding: chunked is supported"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400, "bad Content-Length"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", 400, "bad Content-Length"),
])
@pytest.mark.parametrize("step", [None, 1, 3])
def test_a_head_two_parsers_could_read_differently_is_refused(data, status, reason, step):
    assert _pieces(Requests(), GET_A + data + SMUGGLED, step) == [
        (Head("a.localhost"), GET_A), (Head(None, True, status, reason), b""),
    ]


def test_a_chunked_body_with_bare_line_feeds_stays_with_its_app_with_what_follows():
    """The router can't tell where such a body ends: the request after it is not routed (to b),
    it goes to the app that has the body."""
    head = b"POST / HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    data = head + b"5\nhello\n0\n\n" + b"GET / HTTP/1.1\r\nHost: b.localhost\r\n\r\n"
    for step in (None, 1, 4):
        assert _pieces(Requests(), data, step) == [(Head("a.localhost"), data)]


def _mutated(rng: random.Random, data: bytes) -> bytes:
    """``data`` with a few bytes changed, inserted (line ends, separators, framing headers) or cut."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out) + 1)
        kind = rng.random()
        if kind < 0.4 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif kind < 0.7:
            out[at:at] = rng.choice([b"\r\n", b"\n", b":", b" ", b"\x00", b"0", b"\x16\x03\x01", b"Host: x\r\n",
                                     b"Transfer-Encoding: chunked\r\n", b"Content-Length: 3\r\n"])
        else:
            del out[at : at + rng.randint(1, 8)]
    return bytes(out)


def _no_line_ends(data: bytes) -> bytes:
    return data.replace(b"\r", b"").replace(b"\n", b"")


@pytest.mark.parametrize("reader", [Requests, Hello])
def test_hostile_bytes_are_cut_the_same_however_they_arrive_and_nothing_is_invented(reader):
    """Mangled requests and hellos, fed whole and in random pieces: never an exception, the
    same pieces either way, only the client's own bytes passed on in their order (but blank
    lines between requests), and after a refusal nothing more."""
    rng = random.Random(24)
    valid = STREAM if reader is Requests else records(pq_hello("a.localhost"), 300)
    for _ in range(400):
        data = _mutated(rng, valid)
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 40))))
        whole, parser = _pieces(reader(), data), reader()
        assert _fed(parser, [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]) == whole, data
        # (Blank lines before a request are dropped: compare without line ends.)
        assert _no_line_ends(data).startswith(_no_line_ends(b"".join(piece for _, piece in whole))), data
        refused = [at for at, (head, _) in enumerate(whole) if head is not None and head.status]
        assert refused in ([], [len(whole) - 1]), data
        if refused:
            assert parser.feed(valid) == [], data


# -- TLS ClientHellos ----------------------------------------------------------------------

X25519, X25519MLKEM768 = 0x001D, 0x11EC  # the hybrid post-quantum group (draft-ietf-tls-ecdhe-mlkem)


def _vector(data: bytes, prefix: int) -> bytes:
    return len(data).to_bytes(prefix, "big") + data


def _extension(kind: int, data: bytes) -> bytes:
    return kind.to_bytes(2, "big") + _vector(data, 2)


def pq_hello(name: str | None = "secure.localhost", size: int = 2048) -> bytes:
    """A ClientHello handshake message built by RFC 8446 §4.1.2 as a browser offering a
    post-quantum key share sends it: X25519MLKEM768 (an ML-KEM-768 encapsulation key, 1184
    bytes, and an X25519 share: 1216) and plain X25519, then a padding extension (RFC 7685)
    making it ``size`` bytes (no server_name extension when ``name`` is None)."""
    shares = _vector(X25519MLKEM768.to_bytes(2, "big") + _vector(os.urandom(1216), 2)
                     + X25519.to_bytes(2, "big") + _vector(os.urandom(32), 2), 2)
    extensions = b"".join([
        _extension(0, _vector(b"\x00" + _vector(name.encode(), 2), 2)) if name else b"",  # server_name
        _extension(43, _vector(b"\x03\x04", 1)),  # supported_versions: TLS 1.3
        _extension(10, _vector(X25519MLKEM768.to_bytes(2, "big") + X25519.to_bytes(2, "big"), 2)),
        _extension(13, _vector(b"\x04\x03\x08\x04\x08\x07", 2)),  # signature_algorithms
        _extension(51, shares),  # key_share
    ])
    fixed = b"\x03\x03" + os.urandom(32) + _vector(os.urandom(32), 1) + _vector(b"\x13\x01\x13\x02", 2) + b"\x01\x00"
    padding = size - 4 - len(fixed) - 2 - len(extensions) - 4
    body = fixed + _vector(extensions + _extension(21, b"\x00" * padding), 2)
    return b"\x01" + len(body).to_bytes(3, "big") + body


def real_hello(name: str = "secure.localhost") -> bytes:
    """What Python's ssl (OpenSSL) sends first, as one record."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def test_the_post_quantum_hello_is_one_openssl_reads(tmp_path: Path):
    """The hand-built hello is a real one: OpenSSL answers it with a ServerHello, not an alert."""
    cert, key = self_signed(["localhost"])
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = ctx.wrap_bio(incoming, outgoing, server_side=True)
    hello = pq_hello()
    assert len(hello) == 2048
    incoming.write(records(hello, 1000))
    with pytest.raises(ssl.SSLWantReadError):
        server.do_handshake()
    answer = outgoing.read()
    assert answer[0] == 0x16 and answer[5] == 0x02  # a handshake record holding a ServerHello


@pytest.mark.parametrize("step", [None, 1, 5, 100])
@pytest.mark.parametrize("framing", [(), (1,), (4, 900), (700, 700)], ids=["one", "1+", "4+900+", "700+700+"])
def test_a_hello_is_read_whole_across_records_and_segments(step, framing):
    data = records(pq_hello("Secure.Localhost."), *framing)
    hello = Hello()
    assert _pieces(hello, data[:-1], step) == [] and hello.partial
    assert _pieces(hello, data[-1:]) == [(Head("secure.localhost", last=True), data)]


def test_a_real_hello_byte_by_byte_and_what_follows_it_as_it_comes():
    data = real_hello("App.localhost")
    hello = Hello()
    # The hello is whole at its last byte; what follows it is passed on as it comes.
    assert _pieces(hello, data, 1) == [(Head("app.localhost", last=True), data)]
    assert [(head, bytes(rest)) for head, rest in hello.feed(b"\x17early")] == [(None, b"\x17early")]
    assert _pieces(Hello(), data + b"\x17early") == [(Head("app.localhost", last=True), data + b"\x17early")]
    # Re-framed into 64-byte records, as any TLS stack may: the same name, the bytes as sent.
    message = data[5:]
    reframed = records(message, *[64] * (len(message) // 64))
    assert _pieces(Hello(), reframed, 3) == [(Head("app.localhost", last=True), reframed)]


def test_a_hello_without_a_server_name_is_routed_nowhere_but_is_no_error():
    data = records(pq_hello(None), 100)
    assert _pieces(Hello(), data, 1) == [(Head(None, last=True), data)]


def _bad(data: bytes, step: int | None = None) -> tuple[int, str]:
    pieces = _pieces(Hello(), data, step)
    assert len(pieces) == 1 and pieces[0][1] == b""
    head = pieces[0][0]
    assert head is not None and head.host is None and head.last
    return head.status, head.reason


def _with_lengths(message: bytes, at: int, value: bytes) -> bytes:
    return message[:at] + value + message[at + len(value) :]


@pytest.mark.parametrize(("data", "reason"), [
    (b"G", "a TLS record of type 71 before the ClientHello is whole"),  # plain HTTP, refused at its first byte
    (b"\x17\x03\x03\x00\x05hello", "a TLS record of type 23 before the ClientHello is whole"),
    (b"\x16\x02\x00", "not a TLS record"),
    (b"\x16\x03\x01\x00\x00", "a TLS record of 0 bytes"),
    (b"\x16\x03\x01" + (MAX_RECORD + 1).to_bytes(2, "big"), f"a TLS record of {MAX_RECORD + 1} bytes"),
    (records(b"\x02\x00\x00\x04\x03\x03\x00\x00"), "the first handshake message is not a ClientHello"),
    (records(pq_hello(), 600)[:605] + b"\x15\x03\x03\x00\x02\x02\x28", "a TLS record of type 21 before the ClientHello is whole"),
    # A session id longer than what is left of the hello.
    (records(b"\x01\x00\x00\x24\x03\x03" + b"\x00" * 32 + b"\xff\x00"), "a ClientHello field is longer than the ClientHello"),
    # The extensions' length (after version, random, session id, 2 suites, 1 compression method) one short.
    (records(_with_lengths(pq_hello(), 4 + 75, (2048 - 4 - 77 - 1).to_bytes(2, "big"))),
     "the ClientHello's extensions do not end where it does"),
    # An extension's length past the end of the extensions.
    (records(_with_lengths(pq_hello(), 4 + 77 + 2, b"\xff\xff")), "a ClientHello field is longer than the ClientHello"),
    (records(b"\x01\x00\x00\x10" + b"\x03\x03" + b"\x00" * 14), "the ClientHello ends inside a field"),
])
@pytest.mark.parametrize("step", [None, 1])
def test_what_is_not_a_client_hello_is_refused(data, reason, step):
    assert _bad(data, step) == (400, reason)


def test_a_hello_that_would_take_more_than_the_bound_is_refused_before_it_is_read():
    # A record that would end past the bound: refused at its header.
    assert _bad(b"\x16\x03\x01\x40\x00" + b"\x01\x00\x80\x00") == (431, f"the ClientHello takes more than {MAX_HELLO} bytes")
    # A handshake message longer than the bound: refused once its length has arrived.
    assert _bad(records(b"\x01\x00\x40\x00" + b"\x03\x03")) == (431, f"the ClientHello takes more than {MAX_HELLO} bytes")
    # Many small records of a hello that fits, whose headers push it past the bound, too.
    message = pq_hello(size=MAX_HELLO // 2)
    assert _bad(records(message, *[4] * (len(message) // 4)), 64)[0] == 431
    # The largest hello that fits is read.
    largest = pq_hello(size=MAX_HELLO - 10)
    assert _pieces(Hello(), records(largest, MAX_RECORD))[0][0] == Head("secure.localhost", last=True)


def hello_naming(names: bytes | None) -> bytes:
    """A minimal TLS 1.2-style ClientHello whose server_name extension holds ``names`` (its
    ServerNameList's bytes, RFC 6066 §3); without extensions when ``names`` is None."""
    fixed = b"\x03\x03" + bytes(32) + _vector(b"", 1) + _vector(b"\x13\x01", 2) + b"\x01\x00"
    body = fixed if names is None else fixed + _vector(_extension(0, names), 2)
    return records(b"\x01" + len(body).to_bytes(3, "big") + body)


def _name(kind: int, name: bytes) -> bytes:
    return bytes([kind]) + _vector(name, 2)


@pytest.mark.parametrize(("names", "host"), [
    (_vector(_name(1, b"other") + _name(0, b"B.Localhost"), 2), "b.localhost"),  # an unknown kind of name is passed over
    (_vector(_name(0, "é.localhost".encode()), 2), None),  # not ASCII: no name (routed nowhere)
    (_vector(_name(0, b""), 2), None),
    (_vector(b"", 2), None),
    (None, None),  # no extensions at all
])
def test_the_server_name_is_the_first_host_name_and_odd_ones_route_nowhere(names, host):
    assert _pieces(Hello(), hello_naming(names), 1) == [(Head(host, last=True), hello_naming(names))]


def test_a_server_name_list_longer_than_its_extension_is_refused():
    assert _bad(hello_naming(b"\x00\x40" + _name(0, b"a.localhost"))) == (400, "a ClientHello field is longer than the ClientHello")
    assert _bad(hello_naming(_vector(b"\x00\x00\x40a", 2))) == (400, "a ClientHello field is longer than the ClientHello")


def test_a_truncated_hello_waits_for_the_rest():
    data = records(pq_hello(), 1000)
    for cut in (1, 4, 5, 6, 1004, 1005, 1010, len(data) - 1):
        hello = Hello()
        assert hello.feed(data[:cut]) == [] and hello.partial
        assert _pieces(hello, data[cut:]) == [(Head("secure.localhost", last=True), data)]
