"""The supervisor's proxy on its own: splicing, half-closes, kept-alive connections, refusals.

Each test puts a :class:`~paas_runtime.proxy.Proxy` in front of small asyncio
servers on loopback and drives it from a client thread.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from test_runtime import get

from helpers import free_port, wait_for
from paas_runtime.port import PublicPort
from paas_runtime.proxy import Backend, Proxy


def _started_proxy() -> Proxy:
    """A proxy on a public port of its own (listener 0 of its group)."""
    proxy = Proxy(PublicPort(free_port()).proxy_listener)
    proxy.start()
    return proxy


def _serve_proxy(backend: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any], client):
    """Run ``client(port)`` in a thread against a Proxy in front of the asyncio ``backend``."""

    async def scenario() -> Any:
        server = await asyncio.start_server(backend, "127.0.0.1", 0)
        proxy = _started_proxy()
        proxy.switch(Backend(server.sockets[0].getsockname()[1]))
        try:
            return await asyncio.to_thread(client, proxy.port)
        finally:
            proxy.close()
            server.close()

    return asyncio.run(asyncio.wait_for(scenario(), 30))


def test_proxy_moves_bulk_data_both_ways_and_passes_half_close():
    payload = os.urandom(8 * 1024 * 1024)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
        writer.write(b"<eof seen>")  # still writable after the client's half-close
        writer.close()

    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port)) as sock:

            def send() -> None:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)

            sender = threading.Thread(target=send)
            sender.start()
            received = bytearray()
            while chunk := sock.recv(1024 * 1024):
                received += chunk
            sender.join()
            return bytes(received)

    assert _serve_proxy(echo, client) == payload + b"<eof seen>"


def test_proxy_connects_a_silent_client_for_a_server_that_speaks_first():
    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hello\r\n")
        await writer.drain()
        writer.close()

    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            return sock.recv(100)

    assert _serve_proxy(banner, client) == b"220 hello\r\n"


class _Tagged:
    """An asyncio HTTP/1.1 server that answers every request with ``tag``, keeping connections alive."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if b"upgrade: tunnel" in head.lower():
                    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: tunnel\r\n\r\n")
                    while data := await reader.read(1024):  # then an echo, tagged
                        writer.write(self.tag.encode() + b":" + data)
                    break
                body = self.tag.encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _two_backends(client: Callable[[Proxy, Backend, Backend], Any]) -> Any:
    """Run ``client(proxy, old, new)`` in a thread; the proxy starts on ``old``."""

    async def scenario() -> Any:
        servers = [await asyncio.start_server(_Tagged(tag), "127.0.0.1", 0) for tag in ("old", "new")]
        proxy = _started_proxy()
        old, new = (Backend(server.sockets[0].getsockname()[1]) for server in servers)
        proxy.switch(old)
        try:
            return await asyncio.to_thread(client, proxy, old, new)
        finally:
            proxy.close()
            for server in servers:
                server.close()

    return asyncio.run(asyncio.wait_for(scenario(), 30))


def test_proxy_moves_a_kept_alive_connection_to_the_new_instance_between_requests():
    def client(proxy: Proxy, old: Backend, new: Backend) -> list[str]:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
        bodies = []
        conn.request("GET", "/")
        bodies.append(conn.getresponse().read().decode())
        sock = conn.sock
        proxy.switch(new)
        for _ in range(2):
            conn.request("GET", "/")
            bodies.append(conn.getresponse().read().decode())
        assert conn.sock is sock  # the client kept its one connection
        wait_for(lambda: old.connections == 0, 5, what="the old instance's connection to close")
        assert new.connections == 1
        conn.close()
        return bodies

    assert _two_backends(client) == ["old", "new", "new"]


def test_proxy_keeps_an_upgraded_connection_on_its_instance():
    def client(proxy: Proxy, old: Backend, new: Backend) -> list[bytes]:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: tunnel\r\nConnection: Upgrade\r\n\r\n")
            assert sock.recv(1024).startswith(b"HTTP/1.1 101 ")
            proxy.switch(new)
            answers = []
            for message in (b"GET / HTTP/1.1\r\n\r\n", b"hello"):  # even if it looks like HTTP
                sock.sendall(message)
                answers.append(sock.recv(1024))
            return answers

    assert _two_backends(client) == [b"old:GET / HTTP/1.1\r\n\r\n", b"old:hello"]


def test_proxy_answers_503_without_an_instance_and_502_when_it_refuses():
    async def scenario() -> list[tuple[int, str]]:
        proxy = _started_proxy()
        try:
            answers = [await asyncio.to_thread(get, proxy.port)]
            proxy.switch(Backend(free_port()))  # nothing listens there
            answers.append(await asyncio.to_thread(get, proxy.port))
            return answers
        finally:
            proxy.close()

    (none, refused) = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert none[0] == 503
    assert refused[0] == 502


def test_proxy_serves_connections_accepted_elsewhere():
    """What a stopped instance left queued on its slot is handed to the proxy (Proxy.adopt)."""

    def client(proxy: Proxy, old: Backend, new: Backend) -> list[str]:
        proxy.switch(new)
        with socket.create_server(("127.0.0.1", 0)) as slot:
            conns = [http.client.HTTPConnection(*slot.getsockname(), timeout=5) for _ in range(2)]
            for conn in conns:
                conn.connect()
            accepted = [slot.accept()[0] for _ in conns]
            for sock in accepted:
                sock.setblocking(False)
            proxy.adopt(accepted)
            bodies = []
            for conn in conns:
                conn.request("GET", "/")
                bodies.append(conn.getresponse().read().decode())
                conn.close()
            return bodies

    assert _two_backends(client) == ["new", "new"]
