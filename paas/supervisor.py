"""`paas up`'s supervisor: the platform's own processes — the API (gunicorn), the router, the
local pod host — each started, watched and restarted on exit with backoff.

`paas up` checks what it must (ports, the data directory, the backend), then replaces
itself by ``python -m paas.supervisor`` (same pid, the lock's and listeners' descriptors
kept), handing it the plan of its parts through a pipe: what supervises costs only what it
imports, not the CLI's and the control plane's modules. It owns nothing but its children:
each part is its own process, so the router keeps routing and the pods keep serving while the API's worker (or
the API itself) restarts, and a part that dies is back within a second or so. What each part
is doing is kept in ``run/parts.json`` (written whole, then renamed), with the parts' deaths
and restarts as events: the API's ``/healthz`` reads it, answering 503 while a part is down.

Like the pod host, the supervisor is a *child subreaper*: a process its parts leave behind
(a gunicorn worker whose master was killed) is re-parented to it, and stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from paas.errors import PaasError
from paas.reaper import Reaper, die_with_parent

BACKOFF_START, BACKOFF_MAX, HEALTHY_AFTER = 0.2, 30.0, 30.0
STOP_GRACE = 20.0  # the API finishes its requests, the pod host stops its pods
TICK = 0.1
EVENTS_KEPT = 50


class PartFailed(PaasError):
    """A part exited (or the supervisor was stopped) before it was ready."""


def parts_path(data_dir: Path) -> Path:
    return data_dir / "run" / "parts.json"


@dataclass
class Part:
    """One of the platform's processes: how to start it, and how to tell it is ready — a file
    that appears (``ready_path``, a socket it listens on) or an HTTP answer on loopback
    (``ready_http``: port and path)."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the supervisor's own
    pass_fds: tuple[int, ...] = ()
    ready_path: str = ""
    ready_http: tuple[str, int, str] | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    started: float = 0.0
    restarts: int = 0
    failures: int = 0
    next_start: float = 0.0
    down_since: float | None = None
    last_exit: str = ""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, env=os.environ | self.env, pass_fds=self.pass_fds, preexec_fn=die_with_parent,
            stdin=subprocess.DEVNULL,
        )
        self.started = time.time()

    def ready(self) -> bool:
        if self.ready_path:
            return os.path.exists(self.ready_path)
        if self.ready_http:
            return _answers(*self.ready_http)
        return True

    def plan(self) -> dict:
        """What `paas up` hands the supervisor of this part."""
        return {"name": self.name, "argv": self.argv, "env": self.env, "pass_fds": list(self.pass_fds),
                "ready_path": self.ready_path, "ready_http": self.ready_http}

    @classmethod
    def planned(cls, plan: dict) -> Part:
        http = plan.get("ready_http")
        return cls(plan["name"], list(plan["argv"]), dict(plan["env"]), tuple(plan["pass_fds"]),
                   plan.get("ready_path", ""), (str(http[0]), int(http[1]), str(http[2])) if http else None)

    def to_json(self) -> dict:
        return {
            "state": "up" if self.down_since is None else "down",
            "pid": self.proc.pid if self.proc is not None and self.down_since is None else None,
            "since": self.started if self.down_since is None else self.down_since,
            "restarts": self.restarts,
            "last_exit": self.last_exit or None,
        }


class Supervisor:
    def __init__(self, data_dir: Path, say: Callable[[str], None], reap_orphans: bool = False) -> None:
        """``reap_orphans``: this process exists to supervise (`paas up`), so it becomes a child
        subreaper and stops every process re-parented to it."""
        self.path = parts_path(data_dir)
        self.say = say
        self.parts: list[Part] = []
        self.events: list[dict] = []
        self.stopping = threading.Event()
        self._reaper = Reaper() if reap_orphans else None

    def start(self, part: Part, timeout: float = 60.0) -> None:
        """Start ``part`` and wait until it is ready; raise PartFailed if it exits first."""
        self.parts.append(part)
        part.start()
        self._write()
        deadline = time.monotonic() + timeout
        while not part.ready():
            assert part.proc is not None
            if self.stopping.is_set() or part.proc.poll() is not None or time.monotonic() > deadline:
                raise PartFailed(f"the {part.name} did not start ({_exit(part.proc.poll())})")
            time.sleep(0.05)

    def run(self) -> None:
        """Watch the parts until ``stopping`` is set (by a signal), then stop them."""
        try:
            while not self.stopping.wait(TICK):
                changed = False
                for part in self.parts:
                    changed |= self._tend(part)
                self._stop_orphans()
                if changed:
                    self._write()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop every part, the last started first (the API before the pods it drives)."""
        self.stopping.set()
        deadline = time.monotonic() + STOP_GRACE
        for part in reversed(self.parts):
            if part.proc is None:
                continue
            if part.proc.poll() is None:
                part.proc.terminate()
            try:
                part.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                part.proc.kill()
                part.proc.wait()
        self._stop_orphans()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _tend(self, part: Part) -> bool:
        """Notice an exit, restart when its backoff is over; whether anything changed."""
        now = time.time()
        if part.down_since is None:
            assert part.proc is not None
            code = part.proc.poll()
            if code is None:
                if part.failures and now - part.started >= HEALTHY_AFTER:
                    part.failures = 0
                return False
            part.last_exit = _exit(code)
            part.down_since = now
            part.failures = 0 if now - part.started >= HEALTHY_AFTER else part.failures + 1
            delay = min(BACKOFF_MAX, BACKOFF_START * 2 ** max(0, part.failures - 1))
            part.next_start = now + delay
            self._event(part, f"the {part.name} {part.last_exit}; restarting it in {delay:g} s")
            return True
        if now < part.next_start:
            return False
        try:
            part.start()
        except OSError as e:
            part.next_start = now + BACKOFF_MAX
            self._event(part, f"the {part.name} could not be started ({e.strerror}); trying again in {BACKOFF_MAX:g} s")
            return True
        part.restarts += 1
        part.down_since = None
        self._event(part, f"the {part.name} was restarted (restart {part.restarts})")
        return True

    def _event(self, part: Part, message: str) -> None:
        self.say(f"paas: {message}")
        self.events = [*self.events, {"time": time.time(), "part": part.name, "message": message}][-EVENTS_KEPT:]

    def _stop_orphans(self) -> None:
        """Stop what a part left behind (re-parented here)."""
        if self._reaper is not None:
            self._reaper.stop_orphans({p.proc.pid for p in self.parts if p.proc is not None})

    def _write(self) -> None:
        state = {
            "supervisor": os.getpid(),
            "parts": {part.name: part.to_json() for part in self.parts},
            "events": self.events,
        }
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
        os.replace(tmp, self.path)


def launch(data_dir: Path, parts: list[Part], banner: list[str]) -> NoReturn:
    """Become the supervisor of ``parts`` (this process, exec'd): it starts them in order,
    prints ``banner`` once they are ready and watches them until told to stop. The parts'
    descriptors are kept across the exec."""
    plan = json.dumps({"data_dir": str(data_dir), "parts": [p.plan() for p in parts], "banner": banner}).encode()
    if len(plan) > 60_000:  # what a pipe holds before a write blocks
        raise PaasError("the platform's plan is too large to hand to its supervisor")
    read, write = os.pipe()
    os.write(write, plan)
    os.close(write)
    for fd in {read, *(fd for p in parts for fd in p.pass_fds)}:
        os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "paas.supervisor", "--plan-fd", str(read)])


def main(argv: list[str] | None = None) -> int:
    args = (argv if argv is not None else sys.argv[1:])
    if len(args) != 2 or args[0] != "--plan-fd":
        print("usage: python -m paas.supervisor --plan-fd FD (paas up runs it)", file=sys.stderr)
        return 2
    with os.fdopen(int(args[1]), "rb") as f:
        plan = json.loads(f.read())
    supervisor = Supervisor(Path(plan["data_dir"]), say=lambda line: print(line, file=sys.stderr, flush=True),
                            reap_orphans=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: supervisor.stopping.set())
    try:
        for part in plan["parts"]:
            supervisor.start(Part.planned(part))
    except PaasError as e:
        supervisor.stop()
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    for line in plan["banner"]:
        print(line, flush=True)
    supervisor.run()
    return 0


def _answers(host: str, port: int, path: str) -> bool:
    """Whether an HTTP server answers ``GET path`` at ``host:port`` (any status)."""
    try:
        with socket.create_connection((host, port), timeout=1) as conn:
            conn.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            return conn.recv(5) == b"HTTP/"
    except OSError:
        return False


def read_parts(data_dir: Path) -> dict | None:
    """The parts as the running supervisor last wrote them; None without one (the control
    plane runs on its own, as in tests, or the supervisor that wrote it is gone)."""
    try:
        state = json.loads(parts_path(data_dir).read_text())
        os.kill(int(state["supervisor"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


def _exit(code: int | None) -> str:
    if code is None:
        return "is still starting"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


if __name__ == "__main__":
    sys.exit(main())
