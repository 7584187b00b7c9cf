"""`paas-config`: takes an app's config (`PUT /config`, or a file it watches), writes it into
the shared volume and tells the app (`paas_config.reload`). Parameters from the environment
first, flags too; see the README. With a credential (`CONFIG_TOKEN_FILE`) only the platform
may read its status or give it a config (`paas_config.credential`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from paas_config import __version__, credential, files, reload

log = logging.getLogger("paas_config")
RELOADS = ("restart", "signal", "webhook", "none")
WATCH_INTERVAL = 1.0
UNAUTHORIZED = {"error": "this endpoint needs the pod's credential (Authorization: Bearer, CONFIG_TOKEN_FILE)"}


@dataclass(frozen=True)
class Document:
    """One config version, as the control plane (or the watched file) gives it."""

    version: int
    vars: dict[str, str]
    reload: str = "restart"
    signal: str = "SIGHUP"
    webhook: str = "/-/reload"

    @classmethod
    def parse(cls, data: Any) -> Document:
        if not isinstance(data, dict):
            raise ValueError("send a JSON object: version, vars, reload, signal, webhook")
        unknown = set(data) - {"version", "vars", "reload", "signal", "webhook"}
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
        doc = cls(**data)
        if not isinstance(doc.version, int) or doc.version < 0:
            raise ValueError("version must be a whole number")
        if not isinstance(doc.vars, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in doc.vars.items()):
            raise ValueError("vars must map names to strings")
        if doc.reload not in RELOADS:
            raise ValueError(f"reload must be one of {', '.join(RELOADS)}")
        return doc


class Sidecar:
    def __init__(self, config_dir: Path, runtime: str, app: str, secret: bytes | None = None) -> None:
        self.config_dir, self.runtime, self.app = config_dir, runtime, app
        self.secret = secret  # the pod's credential: asked of callers, sent to the runtime
        self.retrier = reload.Retrier()
        self.document: Document | None = None
        self._lock = threading.Lock()

    def apply(self, doc: Document) -> None:
        with self._lock:
            if self.document == doc:
                return
            files.write(self.config_dir, doc.version, doc.vars)
            previous, self.document = self.document, doc
            log.info("config v%d written to %s (%d variables)", doc.version, self.config_dir, len(doc.vars))
            if previous is None and doc.reload in ("signal", "webhook"):
                # The first config of this run: the app started with it already (a restart
                # of this sidecar must not make the app reload for nothing).
                self.retrier.done_version = doc.version
                return
            if doc.reload == "signal":
                self.retrier.start(doc.version, lambda: _signalled(reload.send_signal(self.runtime, doc.signal, self.secret), doc.signal))
            elif doc.reload == "webhook":
                self.retrier.start(doc.version, lambda: f"webhook answered {reload.call_webhook(self.app, doc.webhook, doc.version)}")
            else:
                self.retrier.done_version = doc.version

    def status(self) -> dict[str, Any]:
        doc = self.document
        return {
            "version": doc.version if doc else None,
            "reload": doc.reload if doc else None,
            "notified": doc is not None and self.retrier.done_version == doc.version,
            "error": self.retrier.error,
        }


def _signalled(pid: int | None, name: str) -> str:
    return f"sent {name} to pid {pid}" if pid else "nothing serves yet: the next instance starts with it"


def _handler(sidecar: Sidecar) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/status":
                if self._allowed():
                    self._json(200, sidecar.status())
            elif self.path == "/healthz":  # open: a probe's, and it tells nothing
                self._json(200, {"ok": True})
            else:
                self._json(404, {"error": "GET /status, GET /healthz and PUT /config are served here"})

        def do_PUT(self) -> None:  # noqa: N802
            if self.path != "/config":
                return self._json(404, {"error": "PUT /config takes the config"})
            if not self._allowed():
                return None
            try:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                doc = Document.parse(json.loads(body or b"null"))
                sidecar.apply(doc)
            except (ValueError, TypeError) as e:
                return self._json(400, {"error": str(e)})
            except OSError as e:
                return self._json(500, {"error": f"cannot write {sidecar.config_dir}: {e.strerror}"})
            self._json(200, sidecar.status())

        def _allowed(self) -> bool:
            """Whether the request carries the pod's credential (if there is one); else 401."""
            if credential.allows(sidecar.secret, self.headers.get("Authorization")):
                return True
            self.close_connection = True  # its body, if any, is left unread
            self._json(401, UNAUTHORIZED, ("WWW-Authenticate", "Bearer"))
            return False

        def _json(self, status: int, body: dict[str, Any], *extra: tuple[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in extra:
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the body of a PUT holds the app's config: never logged

    return Handler


def _watch(sidecar: Sidecar, source: Path) -> None:
    """Apply the document in ``source`` whenever it changes (a Kubernetes ConfigMap's file)."""
    seen: float | None = None
    while True:
        try:
            changed: float | None = source.stat().st_mtime
        except OSError:
            changed = None
        if changed is not None and changed != seen:
            seen = changed  # a broken file is reported once, then again when it changes
            try:
                sidecar.apply(Document.parse(json.loads(source.read_text())))
            except (OSError, ValueError, TypeError) as e:
                log.warning("cannot use %s: %s", source, e)
        time.sleep(WATCH_INTERVAL)


def _addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def main(argv: Sequence[str] | None = None) -> int:
    env = os.environ
    parser = argparse.ArgumentParser(prog="paas-config", description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default=env.get("CONFIG_ADDR") or "0.0.0.0:8076", help="HOST:PORT to serve on ($CONFIG_ADDR)")
    parser.add_argument("--dir", default=env.get("PAAS_CONFIG_DIR") or "/workspace/config",
                        help="the link to publish the config at ($PAAS_CONFIG_DIR)")
    parser.add_argument("--runtime", default=env.get("CONFIG_RUNTIME") or "127.0.0.1:8078",
                        help="HOST:PORT of the runtime's status endpoint, for `signal` ($CONFIG_RUNTIME)")
    parser.add_argument("--app", default=env.get("CONFIG_APP") or "127.0.0.1:8080",
                        help="HOST:PORT of the app, for `webhook` ($CONFIG_APP)")
    parser.add_argument("--source", default=env.get("CONFIG_SOURCE") or "",
                        help="a JSON file to watch for the config, e.g. a mounted ConfigMap ($CONFIG_SOURCE)")
    parser.add_argument("--token-file", default=env.get("CONFIG_TOKEN_FILE") or "",
                        help="a file holding the pod's credential: PUT /config and GET /status then require it "
                             "(Authorization: Bearer), and it is sent to the runtime ($CONFIG_TOKEN_FILE)")
    parser.add_argument("--version", action="version", version=__version__)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="paas-config: %(message)s")
    try:
        host, port = _addr(args.addr)
        secret = credential.read(args.token_file) if args.token_file else None
    except (argparse.ArgumentTypeError, credential.CredentialError) as e:
        print(f"paas-config: error: {e}", file=sys.stderr)
        return 2
    sidecar = Sidecar(Path(os.path.abspath(args.dir)), args.runtime, args.app, secret)
    if args.source:
        threading.Thread(target=_watch, args=(sidecar, Path(args.source)), daemon=True).start()
    try:
        server = ThreadingHTTPServer((host, port), _handler(sidecar))
    except OSError as e:
        print(f"paas-config: error: cannot listen on {host}:{port}: {e.strerror}", file=sys.stderr)
        return 1
    log.info("serving PUT /config on %s:%d, writing %s", host, port, sidecar.config_dir)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
