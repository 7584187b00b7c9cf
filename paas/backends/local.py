"""The local backend: a pod is a group of child processes sharing a workspace directory.

Every process of a pod, down to the app's own workers, inherits a marker variable naming
its data directory, pod and container: the marker is how the backend finds "everything in
this container" even after a process was orphaned (a runtime killed with SIGKILL leaves its
app instances behind, reparented to init). A container that exits has its leftovers killed
before it restarts; a stopped pod has all of its processes killed; a new control plane kills
whatever a killed predecessor on the same data directory left running.

One thread (the "kubelet") starts every process, so that each child can ask the kernel to
SIGTERM it when that thread's process dies (PR_SET_PDEATHSIG is tied to the creating thread).
Crashed processes come back with exponential backoff.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from paas.backends.base import ContainerStatus, PodStatus, read_status
from paas.backends.logfiles import LogWriter, follow_logs
from paas.backends.logfiles import now as _now
from paas.errors import BackendUnavailable
from paas.podmodel import PERSISTENT, POD, SECRET, SHARED, Container, PodSpec, Volume

BACKOFF_START, BACKOFF_MAX, HEALTHY_AFTER = 1.0, 30.0, 30.0
STOP_GRACE = 5.0
MARKER = "PAAS_LOCAL_POD"
_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Process:
    """One container of a pod, as a child process (and its process group)."""

    spec: Container
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    marker: str
    proc: subprocess.Popen | None = None
    started: float | None = None
    restarts: int = 0
    failures: int = 0
    next_start: float = 0.0
    exit_code: int | None = None
    writer: LogWriter | None = field(default=None, repr=False)

    @property
    def state(self) -> str:
        if self.proc is None:
            return "created" if self.restarts == 0 else "restarting"
        return "running" if self.proc.poll() is None else "exited"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.started = time.time()
        assert self.proc.stdout is not None
        self.writer = LogWriter(self.proc.stdout, self.log)

    def reap(self, now: float) -> bool:
        """If the process has exited, schedule its restart with backoff; True if it had."""
        if self.proc is None or self.proc.poll() is None:
            return False
        kill_marked(self.marker)  # what the exited process left running must not outlive it
        self.exit_code = self.proc.returncode
        self.failures = 0 if now - (self.started or now) >= HEALTHY_AFTER else self.failures + 1
        self.next_start = now + min(BACKOFF_MAX, BACKOFF_START * 2 ** max(0, self.failures - 1))
        self.restarts += 1
        self.proc = None
        return True

    def signal(self, sig: int) -> None:
        if self.proc is not None:
            _killpg(self.proc.pid, sig)


@dataclass
class _Pod:
    spec: PodSpec
    dir: Path
    ports: dict[tuple[str, str], int]  # (container, port name) -> the port it binds on the host
    processes: list[_Process]
    mounts: dict[str, list[tuple[str, str]]]  # container -> (path in the pod, directory), longest first


class LocalBackend:
    name = "local"

    def __init__(self, data_dir: Path, apps_host: str = "127.0.0.1") -> None:
        self.apps_host = apps_host  # where published ports listen
        self.root = data_dir / "pods"
        self.root.mkdir(parents=True, exist_ok=True)
        self.marker = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]
        kill_marked(self.marker + "/", prefix=True)  # left by a control plane that was killed
        self._pods: dict[str, _Pod] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="local-kubelet", daemon=True)
        self._thread.start()

    # Backend protocol

    def apply(self, spec: PodSpec) -> str | None:
        """Start the pod, or replace it if its spec changed (crashed processes restart on their own)."""
        with self._lock:
            current = self._pods.get(spec.app)
            if current is not None and current.spec.digest == spec.digest:
                return None
        if current is not None:
            self._stop(current)
        pod = self._prepare(spec)
        with self._lock:
            self._pods[spec.app] = pod
        self._wake.set()
        return "pod created" if current is None else "pod replaced (its spec changed)"

    def remove(self, app: str) -> None:
        with self._lock:
            pod = self._pods.pop(app, None)
        if pod is not None:
            self._stop(pod)
        shutil.rmtree(self.root / app, ignore_errors=True)

    def recreate(self, app: str) -> None:
        with self._lock:
            pod = self._pods.get(app)
        if pod is not None:
            self._stop(pod)
            fresh = self._prepare(pod.spec)
            with self._lock:
                self._pods[app] = fresh
            self._wake.set()

    def pods(self, credentials: Mapping[str, str] | None = None) -> dict[str, PodStatus]:
        with self._lock:
            pods = list(self._pods.values())
        return {pod.spec.app: self._status(pod, (credentials or {}).get(pod.spec.app)) for pod in pods}

    def logs(self, app: str, follow: bool = False, tail: int = 200) -> Iterator[str]:
        logs_dir = self.root / app / "logs"

        def alive() -> bool:
            with self._lock:
                return app in self._pods

        return follow_logs(logs_dir, tail=tail, follow=follow, alive=alive)

    def endpoint(self, app: str, container: str, port: str) -> str | None:
        with self._lock:
            pod = self._pods.get(app)
        number = pod.ports.get((container, port)) if pod else None
        return f"http://127.0.0.1:{number}" if number else None

    def signal(self, app: str, container: str, signal: int) -> bool:
        with self._lock:
            pod = self._pods.get(app)
            process = next((p for p in pod.processes if p.spec.name == container), None) if pod else None
            if process is None or process.proc is None or process.proc.poll() is not None:
                return False
            process.proc.send_signal(signal)  # its main process, as `docker kill --signal`
            return True

    def close(self) -> None:
        """Stop every pod's processes (their workspaces stay for the next start)."""
        self._closed = True
        self._wake.set()
        with self._lock:
            pods, self._pods = list(self._pods.values()), {}
        for pod in pods:
            self._stop(pod)

    # internals

    def _prepare(self, spec: PodSpec) -> _Pod:
        pod_dir = self.root / spec.app
        for sub in (pod_dir / "logs", pod_dir / "home"):
            sub.mkdir(parents=True, exist_ok=True)
        directories = {volume.name: self._volume(pod_dir, volume) for volume in spec.volumes}
        ports: dict[tuple[str, str], int] = {}
        mounts: dict[str, list[tuple[str, str]]] = {}
        processes = []
        for c in spec.containers:
            own = sorted(((m.path, str(directories[m.volume])) for m in c.mounts), key=lambda m: -len(m[0]))
            mounts[c.name] = own
            env = {k: _mount(v, own) for k, v in c.env.items()}
            # One host network for every pod: a published port listens where apps do, an
            # internal one moves to a free loopback port so pods don't collide.
            for port in c.ports:
                host, number = (self.apps_host, port.number) if port.publish else ("127.0.0.1", _free_port())
                ports[(c.name, port.name)] = number
                if port.bind_env:
                    env[port.bind_env] = f"{host}:{number}"
                if port.number_env:
                    env[port.number_env] = str(number)
            marker = f"{self.marker}/{spec.app}/{c.name}"
            base = _base_env() | {"HOME": str(pod_dir / "home"), MARKER: marker}
            processes.append(
                _Process(
                    spec=c,
                    argv=[_executable(c.command[0]), *c.command[1:]],
                    env=base | env,
                    cwd=pod_dir,
                    log=pod_dir / "logs" / f"{c.name}.log",
                    marker=marker,
                )
            )
        for p in processes:  # where each reaches the others' ports: on loopback, at their host port
            p.env |= {var: f"127.0.0.1:{ports[peer]}" for var, peer in p.spec.peers.items() if peer in ports}
        return _Pod(spec, pod_dir, ports, processes, mounts)

    def _volume(self, pod_dir: Path, volume: Volume) -> Path:
        """A volume's directory: the pod's own, one shared by every pod (a cache), or secret files."""
        if volume.kind == SHARED:
            path = self.root.parent / volume.name
        elif volume.kind == SECRET:
            return _write_secrets(pod_dir / volume.name, volume.files)
        elif volume.kind in (POD, PERSISTENT):  # both stay until the pod is removed
            path = pod_dir / ("volumes" if volume.kind == PERSISTENT else "") / volume.name
        else:
            raise BackendUnavailable(f"the local backend has no volumes of kind {volume.kind!r}")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _run(self) -> None:
        while not self._closed:
            now = time.time()
            with self._lock:
                for pod in self._pods.values():
                    for p in pod.processes:
                        p.reap(now)
                        if p.proc is None and p.next_start <= now and not self._closed:
                            try:
                                p.start()
                            except OSError as e:
                                p.failures += 1
                                p.next_start = now + BACKOFF_MAX
                                with p.log.open("a") as log:
                                    log.write(f"{_now()} paas: cannot start {p.argv[0]}: {e}\n")
            self._wake.wait(0.2)
            self._wake.clear()

    def _stop(self, pod: _Pod) -> None:
        with self._lock:
            for p in pod.processes:
                p.next_start = float("inf")
                p.signal(signal.SIGTERM)
            # The kubelet thread reaps a process that exits (`p.proc = None`) while we wait for it.
            procs = [p.proc for p in pod.processes if p.proc is not None]
        deadline = time.monotonic() + STOP_GRACE
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _killpg(proc.pid, signal.SIGKILL)  # whatever is left of the process group
            proc.wait()
        kill_marked(f"{self.marker}/{pod.spec.app}/", prefix=True)
        for p in pod.processes:
            if p.writer is not None:
                p.writer.join(timeout=2)

    def _status(self, pod: _Pod, credential: str | None) -> PodStatus:
        containers = []
        statuses: dict[str, dict] = {}
        reports: dict[str, dict] = {}
        for p in pod.processes:
            containers.append(
                ContainerStatus(
                    p.spec.name,
                    p.state,
                    p.restarts,
                    p.started,
                    p.spec.image,
                    str(p.proc.pid) if p.proc else "",
                    p.exit_code,
                    p.spec.role,
                    p.spec.platform,
                )
            )
            if p.spec.status is not None and p.state == "running":
                port = pod.ports.get((p.spec.name, p.spec.status.port))
                statuses[p.spec.name] = read_status(f"http://127.0.0.1:{port}{p.spec.status.path}", credential)
            for key, path in p.spec.reports.items():
                reports[key] = _read_json(Path(_mount(path, pod.mounts[p.spec.name])))
        return PodStatus(pod.spec.app, pod.spec.digest, containers, statuses, reports)


def _mount(value: str, mounts: list[tuple[str, str]]) -> str:
    for inside, outside in mounts:
        if value == inside or value.startswith(inside + "/"):
            return outside + value[len(inside) :]
    return value


def _write_secrets(directory: Path, files: dict[str, str]) -> Path:
    """The pod's secret files, readable by its owner only; stale ones removed."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    for old in directory.iterdir():
        if old.name not in files:
            old.unlink()
    for name, content in files.items():
        path = directory / name
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(content)
        os.replace(path.with_suffix(".tmp"), path)
    return directory


def _base_env() -> dict[str, str]:
    """What a pod's processes inherit from the host: enough to find tools, nothing secret."""
    keep = (
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TZ",
        "TMPDIR",
        "SSL_CERT_FILE",
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_FIND_LINKS",
        "PIP_CONFIG_FILE",
        "PIP_NO_INDEX",
    )
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _executable(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise BackendUnavailable(f"cannot find the {name!r} command: is paas installed (pip install -e .)?")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def marked(marker: str, prefix: bool = False) -> list[int]:
    """Pids of live processes whose environment carries ``MARKER=marker`` (or a marker starting so)."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(needle) if prefix else v == needle for v in environ):
            found.append(int(entry.name))
    return [pid for pid in found if pid != os.getpid()]


def kill_marked(marker: str, prefix: bool = False) -> None:
    """SIGKILL every process carrying the marker (their graceful stop has already been asked)."""
    for pid in marked(marker, prefix):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
