"""``python -m paas.router``: the router process `paas up` starts.

It is handed its listening sockets (``--fd``, ``--tls-fd``), so `paas up` reports a busy
port itself and the router never binds; it re-reads the table file when it changes and
exits when the process that started it is gone.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from paas.router.server import HEAD_TIMEOUT, Router
from paas.router.table import TableFile

POLL_SECONDS = 0.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paas.router")
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--fd", type=int, action="append", default=[], help="a listening socket for plain HTTP")
    parser.add_argument("--tls-fd", type=int, action="append", default=[], help="a listening socket for TLS")
    parser.add_argument("--parent", type=int, default=os.getppid(), help="exit once this process is gone")
    parser.add_argument("--head-timeout", type=float, default=HEAD_TIMEOUT,
                        help="seconds a client has to send a request head or ClientHello whole")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    table = TableFile(args.table)
    table.refresh()
    routers = [Router(_listener(fd), table, tls=False, head_timeout=args.head_timeout) for fd in args.fd]
    routers += [Router(_listener(fd), table, tls=True, head_timeout=args.head_timeout) for fd in args.tls_fd]
    for router in routers:
        router.start()
    while not stop.wait(POLL_SECONDS):
        if os.getppid() != args.parent:
            break
        table.refresh()
    for router in routers:
        router.close()
    return 0


def _listener(fd: int) -> socket.socket:
    listener = socket.socket(fileno=fd)
    listener.setblocking(False)
    return listener


if __name__ == "__main__":
    sys.exit(main())
