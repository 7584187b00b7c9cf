"""The router (``python -m paas.router``, the process `paas up` starts) read by real clients
over real sockets: fragmented, slow, pipelined, kept alive across hosts, too large and
malformed, in front of real gunicorn apps and a real https sidecar."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

from helpers import free_port, tls_records, wait_for

pytestmark = pytest.mark.slow

#: The router's head timeout in these tests (the default is 10 s).
HEAD_TIMEOUT = 2.0
#: A fatal decode_error alert (RFC 8446 §6.2).
DECODE_ERROR = b"\x15\x03\x01\x00\x02\x02\x32"
#: A pause between two writes: what a client whose bytes come in two TCP segments does.
SEGMENT_GAP = 0.3

APP = """\
import os

TAG = os.environ["TAG"]


def app(environ, start_response):
    body = environ["wsgi.input"].read()
    text = f"{TAG} {environ['REQUEST_METHOD']} {environ['PATH_INFO']} {len(body)}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text]
"""


@dataclass
class Router:
    http: int
    tls: int


def _gunicorn(tmp: Path, tag: str, port: int, *worker: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", *worker, "app:app"],
        cwd=tmp, env=os.environ | {"TAG": tag}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    """The router in front of `one` (gunicorn's sync worker, one of it: one request at a time),
    `a` and `b` (gthread: kept-alive connections) and `secure` (the https sidecar before `a`)."""
    tmp = tmp_path_factory.mktemp("router")
    (tmp / "app.py").write_text(APP)
    ports = {name: free_port() for name in ("one", "a", "b", "secure")}
    procs = [
        _gunicorn(tmp, "one", ports["one"], "-w", "1"),
        _gunicorn(tmp, "a", ports["a"], "-k", "gthread", "--threads", "4"),
        _gunicorn(tmp, "b", ports["b"], "-k", "gthread", "--threads", "4"),
        subprocess.Popen(["paas-https"], env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin",
                                              "HTTPS_PORT": str(ports["secure"]), "PROXY_PORT": str(ports["a"])},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    table = {
        "version": 1, "domain": "localhost",
        "hosts": {f"{name}.localhost": name for name in ports},
        "apps": {name: {"address": "127.0.0.1", "port": port, "tls": name == "secure", "serving": True}
                 for name, port in ports.items()},
    }
    (tmp / "routes.json").write_text(json.dumps(table))
    listeners = [socket.create_server(("127.0.0.1", 0), backlog=128) for _ in range(2)]
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "paas.router", "--table", str(tmp / "routes.json"),
         "--fd", str(listeners[0].fileno()), "--tls-fd", str(listeners[1].fileno()),
         "--head-timeout", str(HEAD_TIMEOUT)],
        pass_fds=[listener.fileno() for listener in listeners],
    ))
    routed = Router(*(listener.getsockname()[1] for listener in listeners))
    for listener in listeners:
        listener.close()
    try:
        for name in ("one", "a", "b"):
            wait_for(lambda name=name: _get(routed.http, f"{name}.localhost")[0] == 200, 30, what=f"{name} via the router")
        wait_for(lambda: _tls_get(routed.tls, "secure.localhost").startswith(b"HTTP/1.1 200"), 30,
                 what="the https sidecar via the router")
        yield routed
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def _get(port: int, host: str, path: str = "/", timeout: float = 5) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each write its own segment
    return sock


def _until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _responses(reader: BinaryIO, methods: list[str]) -> list[tuple[int, dict[str, str], bytes]]:
    """The answers to requests with these methods, read in order from one connection."""
    answers = []
    for method in methods:
        status = int(reader.readline().split()[1])
        headers = {}
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, value = line.decode("latin-1").split(":", 1)
            headers[name.lower()] = value.strip()
        size = 0 if method == "HEAD" or status < 200 else int(headers["content-length"])
        answers.append((status, headers, reader.read(size)))
    return answers


def _tls_client(name: str, alpn_padding: int = 0) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO, bytes]:
    """A TLS client on memory buffers and the ClientHello it sends (made larger by offering
    ``alpn_padding`` made-up protocols before http/1.1)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the sidecar's self-signed certificate
    ctx.set_alpn_protocols([f"x-padding-{n:04d}" for n in range(alpn_padding)] + ["http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return tls, incoming, outgoing, outgoing.read()


def _tls_exchange(tls: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                  sock: socket.socket, request: bytes) -> bytes:
    """Finish the handshake over ``sock``, send ``request``, read the answer until the server closes."""
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed during the handshake") from None
            incoming.write(data)
    tls.write(request)
    sock.sendall(outgoing.read())
    answer = b""
    while data := sock.recv(65536):
        incoming.write(data)
        try:
            while chunk := tls.read(65536):
                answer += chunk
        except ssl.SSLWantReadError:
            continue
        except ssl.SSLZeroReturnError:
            break
    return answer


def _tls_get(port: int, name: str) -> bytes:
    tls, incoming, outgoing, hello = _tls_client(name)
    with _connect(port) as sock:
        sock.sendall(hello)
        return _tls_exchange(tls, incoming, outgoing, sock,
                             f"GET /tls HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())


# -- what it routes on, read whole ---------------------------------------------------------


def test_a_host_in_a_later_segment_is_routed_by_it(router):
    with _connect(router.http) as sock:
        sock.sendall(b"GET /late HTTP/1.1\r\n")
        time.sleep(SEGMENT_GAP)
        sock.sendall(b"Host: a.local")
        time.sleep(SEGMENT_GAP)
        sock.sendall(b"host\r\n\r\n")
        ((status, _, body),) = _responses(sock.makefile("rb"), ["GET"])
    assert (status, body) == (200, b"a GET /late 0")


def test_a_2kb_hello_in_two_records_and_two_writes_completes_a_handshake_through_the_router(router):
    tls, incoming, outgoing, hello = _tls_client("secure.localhost", alpn_padding=120)
    assert len(hello) > 2000
    message = hello[5:]
    framed = tls_records(message, len(message) // 2)  # two TLS records, as a TLS stack may send it
    with _connect(router.tls) as sock:
        sock.sendall(framed[:700])
        time.sleep(SEGMENT_GAP)
        sock.sendall(framed[700:])
        answer = _tls_exchange(tls, incoming, outgoing, sock,
                               b"GET /tls HTTP/1.1\r\nHost: secure.localhost\r\nConnection: close\r\n\r\n")
    assert tls.version() == "TLSv1.3" and tls.selected_alpn_protocol() == "http/1.1"
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\na GET /tls 0")


def test_a_client_sending_its_headers_at_one_byte_a_second_holds_no_worker_of_a_one_worker_app(router):
    """As the probe did: the request line and Host at once, the other headers at 1 byte/s."""
    first, rest = b"GET /slow HTTP/1.1\r\nHost: one.localhost\r\n", b"X-Slow: 1234567890\r\n\r\n"
    two_bytes_sent, stop = threading.Event(), threading.Event()

    def slow_client() -> None:
        with _connect(router.http) as sock:
            sock.sendall(first)
            for n in range(len(rest)):
                if stop.wait(1.0):
                    return
                sock.sendall(rest[n : n + 1])
                if n == 1:
                    two_bytes_sent.set()

    slow = threading.Thread(target=slow_client)
    slow.start()
    try:
        assert two_bytes_sent.wait(10)
        start = time.monotonic()
        try:
            answer = _get(router.http, "one.localhost", "/normal", timeout=5)
        except TimeoutError:
            answer = (0, b"no answer in 5 s")
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        slow.join()
    assert answer == (200, b"one GET /normal 0")
    assert elapsed < 1.0, f"a normal request took {elapsed:.1f} s behind a slow client"


def test_each_request_of_a_kept_alive_connection_goes_to_the_app_its_host_names(router):
    """A client that waits for each answer (as browsers and proxies do) keeps its connection
    across hosts. Bodies are measured, not mistaken for requests: a chunked body holding a
    request for `b` is `a`'s; HEAD's answer has no body; an unknown host gets its page."""
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: b.localhost\r\n\r\n"
    requests = [
        ("GET", b"GET /kept HTTP/1.1\r\nHost: a.localhost\r\n\r\n", b"a GET /kept 0"),
        ("POST", b"POST /chunked HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled), b"a POST /chunked %d" % len(smuggled)),
        ("POST", b"POST /length HTTP/1.1\r\nHost: b.localhost\r\nContent-Length: 5\r\n\r\nhello", b"b POST /length 5"),
        ("GET", b"GET /kept HTTP/1.1\r\nHost: b.localhost\r\n\r\n", b"b GET /kept 0"),
        ("HEAD", b"HEAD /head HTTP/1.1\r\nHost: a.localhost\r\n\r\n", b""),
        ("GET", b"GET /last HTTP/1.1\r\nHost: nobody.localhost\r\n\r\n", None),
    ]
    with _connect(router.http) as sock:
        reader = sock.makefile("rb")
        answers = []
        for method, request, _ in requests:
            sock.sendall(request)
            answers += _responses(reader, [method])
            if request.startswith(b"POST /length"):  # then one sent after a 100 Continue, to a
                sock.sendall(b"PUT /continue HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 4\r\n"
                             b"Expect: 100-continue\r\n\r\n")
                assert _responses(reader, ["PUT"])[0][0] == 100
                sock.sendall(b"body")
                assert _responses(reader, ["PUT"])[0][::2] == (200, b"a PUT /continue 4")
        rest = reader.read()
    assert [(status, body) for status, _, body in answers[:-1]] == [(200, body) for _, _, body in requests[:-1]]
    assert answers[4][1]["content-length"] == str(len(b"a HEAD /head 0"))
    assert answers[-1][0] == 404 and b"No app is served at nobody.localhost" in answers[-1][2] and rest == b""


def test_a_large_body_goes_whole_to_its_app_and_the_request_after_it_to_its_own(router):
    body = os.urandom(8 * 1024 * 1024)
    with _connect(router.http) as sock:
        reader = sock.makefile("rb")
        sock.sendall(b"POST /big HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        first = _responses(reader, ["POST"])
        sock.sendall(b"GET /after HTTP/1.1\r\nHost: b.localhost\r\n\r\n")
        second = _responses(reader, ["GET"])
    assert [(status, text) for status, _, text in first + second] == [
        (200, b"a POST /big %d" % len(body)), (200, b"b GET /after 0"),
    ]


def test_pipelined_requests_for_another_app_end_the_connection_after_the_first_apps_answers(router):
    """The first app's answers come, in order; then the connection ends, the requests for
    `b` unanswered, for the client to send again (RFC 9112 §9.3.2), never another's answer."""
    requests = [
        b"GET /1 HTTP/1.1\r\nHost: a.localhost\r\n\r\n",
        b"HEAD /2 HTTP/1.1\r\nHost: a.localhost\r\n\r\n",
        b"POST /3 HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /4 HTTP/1.1\r\nHost: b.localhost\r\n\r\n",
        b"GET /5 HTTP/1.1\r\nHost: a.localhost\r\n\r\n",
    ]
    for writes in ([b"".join(requests)], requests):  # in one segment, or one a request at a time
        with _connect(router.http) as sock:
            for data in writes:
                sock.sendall(data)
            reader = sock.makefile("rb")
            answers = _responses(reader, ["GET", "HEAD", "POST"])
            rest = reader.read()
        assert [(status, body) for status, _, body in answers] == [(200, b"a GET /1 0"), (200, b""), (200, b"a POST /3 3")]
        assert rest == b""


# -- slow, too large, malformed ------------------------------------------------------------


def test_a_stalled_head_gets_a_408_and_a_silent_or_stalled_connection_is_closed(router):
    hello = _tls_client("secure.localhost")[3]
    for port, sent, expected in (
        (router.http, b"GET / HTTP/1.1\r\nHost: a.loc", b"HTTP/1.1 408 Request Timeout\r\n"),
        (router.http, b"", b""),
        (router.tls, hello[:10], b""),  # TLS has no alert for it: closed
    ):
        with _connect(port) as sock:
            start = time.monotonic()
            sock.sendall(sent)
            answer = _until_closed(sock)
            elapsed = time.monotonic() - start
        assert answer[: len(expected) or None] == expected
        assert HEAD_TIMEOUT - 0.2 < elapsed < HEAD_TIMEOUT + 3
    assert b"did not arrive whole within 2 seconds" in _answer(router.http, b"GET / HTTP/1.1\r\n")


def _answer(port: int, data: bytes) -> bytes:
    with _connect(port) as sock:
        sock.sendall(data)
        return _until_closed(sock)


@pytest.mark.parametrize(("data", "status", "reason"), [
    pytest.param(b"GET / HTTP/1.1\r\nHost: a.localhost\r\nCookie: " + b"c" * 40000 + b"\r\n\r\n", 431,
     b"its head is larger than 32768 bytes", id="too-large"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a.localhost\r\nHost: b.localhost\r\n\r\n", 400, b"Found multiple Host: headers", id="two-hosts"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     400, b"it has both Transfer-Encoding and Content-Length", id="two-framings"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a.localhost\r\nX-Bad Header: 1\r\n\r\n", 400, b"illegal header line",
                 id="bad-header"),
])
def test_a_head_too_large_or_malformed_is_answered_by_the_router_and_closed(router, data, status, reason):
    answer = _answer(router.http, data)
    assert answer.startswith(b"HTTP/1.1 %d " % status)
    assert b"Connection: close\r\n" in answer and reason in answer
    # After an answered request on the same connection too.
    with _connect(router.http) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: b.localhost\r\n\r\n")
        reader = sock.makefile("rb")
        assert _responses(reader, ["GET"])[0][2] == b"b GET / 0"
        sock.sendall(data)
        answer = reader.read()
    assert answer.startswith(b"HTTP/1.1 %d " % status) and reason in answer


def test_what_is_not_a_client_hello_gets_a_decode_error_alert(router):
    assert _answer(router.tls, b"GET / HTTP/1.1\r\nHost: secure.localhost\r\n\r\n") == DECODE_ERROR
