"""The local backend's pod host: the process that owns every local pod, so that pods outlive
the control plane's API worker (gunicorn restarts a worker that dies; the apps must go on
serving meanwhile).

``paas up`` starts it (``python -m paas.backends.podhost``) and restarts it if it exits; the
API worker talks to it through :class:`PodHostClient`, which is the ``local`` backend the
control plane sees. The pod host runs a :class:`~paas.backends.local.LocalBackend` and serves
its methods over a Unix socket in the data directory: one JSON request per connection, one
JSON answer. Only the control plane's own user may connect — the socket lives in a 0700
directory and every peer's uid is checked (``SO_PEERCRED``) — since whoever talks to it
decides what runs.

Logs are read straight from the pods' log files, which the worker can read itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from paas import errors, podmodel
from paas.backends.base import PodStatus
from paas.backends.logfiles import follow_logs
from paas.errors import BackendUnavailable, PaasError
from paas.podmodel import PodSpec

MAX_MESSAGE = 64 * 1024 * 1024
CALL_TIMEOUT = 60.0  # a pod replacement waits for its processes to stop (seconds)
CONNECT_WAIT = 10.0  # how long a call waits for a pod host that is (re)starting


def socket_path(data_dir: Path) -> Path:
    return data_dir / "run" / "pods.sock"


class PodHostClient:
    """The ``local`` backend as the API worker sees it: every call goes to the pod host."""

    name = "local"

    def __init__(self, path: Path, data_dir: Path) -> None:
        self.path = path
        self.root = data_dir / "pods"

    def apply(self, spec: PodSpec) -> str | None:
        return self._call("apply", spec=podmodel.to_json(spec))

    def remove(self, app: str) -> None:
        self._call("remove", app=app)

    def recreate(self, app: str) -> None:
        self._call("recreate", app=app)

    def pods(self, credentials: Mapping[str, str] | None = None) -> dict[str, PodStatus]:
        answer = self._call("pods", credentials=dict(credentials or {}))
        return {name: PodStatus.from_json(status) for name, status in answer.items()}

    def logs(self, app: str, follow: bool = False, tail: int = 200) -> Iterator[str]:
        def alive() -> bool:
            try:
                return bool(self._call("has", app=app))
            except BackendUnavailable:
                return True  # restarting: its pods come back, keep following

        return follow_logs(self.root / app / "logs", tail=tail, follow=follow, alive=alive)

    def endpoint(self, app: str, container: str, port: str) -> str | None:
        return self._call("endpoint", app=app, container=container, port=port)

    def signal(self, app: str, container: str, signal: int) -> bool:
        return bool(self._call("signal", app=app, container=container, signal=int(signal)))

    def close(self) -> None:
        """Nothing to release: the pods belong to the pod host, not to this worker."""

    def _call(self, op: str, **args: Any) -> Any:
        request = json.dumps({"op": op, "args": args}).encode() + b"\n"
        deadline = time.monotonic() + CONNECT_WAIT
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(CALL_TIMEOUT)
            try:
                sock.connect(str(self.path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline:
                    raise BackendUnavailable(
                        "the local pod host is not running (paas up restarts it); try again"
                    ) from None
                time.sleep(0.1)
        with sock:
            try:
                sock.sendall(request)
                answer = _read_line(sock)
            except OSError as e:
                raise BackendUnavailable(f"the local pod host did not answer ({e.strerror or type(e).__name__})") from None
        if answer is None:
            raise BackendUnavailable("the local pod host closed the connection without an answer")
        message = json.loads(answer)
        if "error" in message:
            kind = getattr(errors, str(message.get("kind")), PaasError)
            kind = kind if isinstance(kind, type) and issubclass(kind, PaasError) else PaasError
            raise kind(str(message["error"]))
        return message.get("ok")


def _read_line(sock: socket.socket) -> bytes | None:
    chunks, size = [], 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n"):
            return b"".join(chunks)
        if size > MAX_MESSAGE:
            raise OSError("message too large")


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    backend: Any  # the LocalBackend


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        creds = self.request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        if uid not in (os.geteuid(), 0):
            self._answer({"error": "only the control plane's user may talk to the pod host", "kind": "Unauthorized"})
            return
        line = self.rfile.readline(MAX_MESSAGE)
        try:
            request = json.loads(line)
            answer = {"ok": self._dispatch(str(request["op"]), request.get("args") or {})}
        except PaasError as e:
            answer = {"error": e.message, "kind": type(e).__name__}
        except (ValueError, KeyError, TypeError) as e:
            answer = {"error": f"bad request to the pod host: {e}", "kind": "InvalidInput"}
        except Exception as e:  # the pod host must outlive any one request
            logging.getLogger("paas.podhost").exception("pod host request failed")
            answer = {"error": f"the pod host failed: {type(e).__name__}: {e}", "kind": "BackendUnavailable"}
        self._answer(answer)

    def _dispatch(self, op: str, args: dict) -> Any:
        backend = self.server.backend
        if op == "apply":
            return backend.apply(podmodel.from_json(args["spec"]))
        if op == "pods":
            credentials = {str(k): str(v) for k, v in (args.get("credentials") or {}).items()}
            return {name: status.to_json() for name, status in backend.pods(credentials).items()}
        if op == "has":
            return backend.has(str(args["app"]))
        if op == "remove":
            return backend.remove(str(args["app"]))
        if op == "recreate":
            return backend.recreate(str(args["app"]))
        if op == "endpoint":
            return backend.endpoint(str(args["app"]), str(args["container"]), str(args["port"]))
        if op == "signal":
            return backend.signal(str(args["app"]), str(args["container"]), int(args["signal"]))
        raise ValueError(f"unknown operation {op!r}")

    def _answer(self, answer: dict) -> None:
        try:
            self.wfile.write(json.dumps(answer).encode() + b"\n")
        except OSError:
            pass  # the caller gave up


def serve(path: Path, backend: Any) -> _Server:
    """Serve ``backend`` on the Unix socket ``path`` (in a 0700 directory) from a thread."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    path.unlink(missing_ok=True)
    server = _Server(str(path), _Handler)
    path.chmod(0o600)
    server.backend = backend
    threading.Thread(target=server.serve_forever, name="podhost", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    from paas.backends.local import LocalBackend
    from paas.settings import parse_uids

    parser = argparse.ArgumentParser(prog="python -m paas.backends.podhost")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--apps-host", default="127.0.0.1")
    parser.add_argument("--app-uids", default="", help="the uids apps run as (root only), FIRST-LAST")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="pod host: %(message)s", stream=sys.stderr)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    uids = parse_uids(args.app_uids)
    backend = LocalBackend(args.data_dir, args.apps_host, uids=uids)
    server = serve(socket_path(args.data_dir), backend)
    stop.wait()
    server.shutdown()
    socket_path(args.data_dir).unlink(missing_ok=True)
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
