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

Run by the pod host (`paas.backends.podhost`), the backend is also the pods' *child
subreaper*: a process whose parent exits is re-parented to it rather than to init, and is
stopped. A container's processes are a tree under its main process; one that leaves the tree
(`setsid` and a cleared environment included, which escape the process group and the marker)
is caught when its parent exits, so a stopped pod leaves nothing behind. A process group or a
marker can be left by a process; re-parenting can't. (Cgroups would say the same, but need
root or a delegated hierarchy, which the ordinary user `paas up` often runs as doesn't have.)

With ``uids`` (the pod host runs as root), each app's processes run as a uid of their own,
owning their pod's workspace, volumes, home and cache, none of the control plane's files.
"""

from __future__ import annotations

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

from paas.backends.appuids import AppUids
from paas.backends.base import ContainerStatus, PodStatus, read_status
from paas.backends.logfiles import LogWriter, follow_logs
from paas.backends.logfiles import now as _now
from paas.errors import BackendUnavailable
from paas.podmodel import PERSISTENT, POD, SECRET, SHARED, Container, PodSpec, Volume
from paas.reaper import Reaper, die_with_parent

BACKOFF_START, BACKOFF_MAX, HEALTHY_AFTER = 1.0, 30.0, 30.0
STOP_GRACE = 5.0
MARKER = "PAAS_LOCAL_POD"
ORPHAN_WAIT = 3.0  # how long stopping a pod waits for what its processes left to be re-parented


@dataclass
class _Process:
    """One container of a pod, as a child process (and its process group)."""

    spec: Container
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    marker: str
    user: int | None = None  # the app's uid (None: the pod host's own)
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
            preexec_fn=die_with_parent,
            user=self.user,
            group=self.user,
            extra_groups=[] if self.user is not None else None,
            umask=0o077,
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

    def __init__(
        self, data_dir: Path, apps_host: str = "127.0.0.1", uids: range | None = None, reap_orphans: bool = False
    ) -> None:
        """``uids``: run each app as a uid of its own from this range (root only);
        ``reap_orphans``: this process exists to run pods (the pod host) and stops every
        process re-parented to it."""
        self.apps_host = apps_host  # where published ports listen
        self.root = data_dir / "pods"
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Apps' own uids must pass through to their pods' directories; nothing else is theirs.
        self.root.chmod(0o711 if uids else 0o700)
        self.uids = AppUids(self.root / "uids.json", uids) if uids else None
        self._reaper = Reaper() if reap_orphans else None
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
        if self.uids is not None:
            self.uids.forget(app)

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

    def has(self, app: str) -> bool:
        """Whether ``app``'s pod runs here (what a follower of its logs asks)."""
        with self._lock:
            return app in self._pods

    def logs(self, app: str, follow: bool = False, tail: int = 200) -> Iterator[str]:
        return follow_logs(self.root / app / "logs", tail=tail, follow=follow, alive=lambda: self.has(app))

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
        user = self.uids.uid(spec.app) if self.uids is not None else None
        _own_dir(pod_dir, None, 0o711 if user is not None else 0o700)
        _own_dir(pod_dir / "logs", None, 0o700)  # written by this process, read by the control plane
        _own_dir(pod_dir / "home", user, 0o700)
        _own_dir(pod_dir / "tmp", user, 0o700)  # a TMPDIR of its own: /tmp is every app's
        directories = {volume.name: self._volume(pod_dir, volume, user) for volume in spec.volumes}
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
            base = _base_env() | {"HOME": str(pod_dir / "home"), "TMPDIR": str(pod_dir / "tmp"), MARKER: marker}
            if user is not None:
                base |= {"USER": f"paas-{spec.app}", "LOGNAME": f"paas-{spec.app}"}
            processes.append(
                _Process(
                    spec=c,
                    argv=[_executable(c.command[0]), *c.command[1:]],
                    env=base | env,
                    cwd=pod_dir,
                    log=pod_dir / "logs" / f"{c.name}.log",
                    marker=marker,
                    user=user,
                )
            )
        for p in processes:  # where each reaches the others' ports: on loopback, at their host port
            p.env |= {var: f"127.0.0.1:{ports[peer]}" for var, peer in p.spec.peers.items() if peer in ports}
        return _Pod(spec, pod_dir, ports, processes, mounts)

    def _volume(self, pod_dir: Path, volume: Volume, user: int | None) -> Path:
        """A volume's directory: the pod's own, one shared by every pod (a cache), or secret
        files. Apps with uids of their own share nothing: what one wrote into a shared cache,
        another would run."""
        if volume.kind == SHARED and user is None:
            path = self.root.parent / volume.name
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            return path
        if volume.kind == SECRET:
            return _write_secrets(pod_dir / volume.name, volume.files, user)
        if volume.kind not in (POD, PERSISTENT, SHARED):
            raise BackendUnavailable(f"the local backend has no volumes of kind {volume.kind!r}")
        if volume.kind == PERSISTENT:  # both stay until the pod is removed
            _own_dir(pod_dir / "volumes", None, 0o711 if user is not None else 0o700)
        path = pod_dir / ("volumes" if volume.kind == PERSISTENT else "") / volume.name
        _own_dir(path, user, 0o700, tree=True)
        return path

    def _run(self) -> None:
        while not self._closed:
            if self._reaper is not None:
                self._stop_orphans()
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
        if self._reaper is not None:  # what left the group and the marker behind comes back here
            deadline = time.monotonic() + ORPHAN_WAIT
            while (self._stop_orphans() or marked(f"{self.marker}/{pod.spec.app}/", prefix=True)) and (
                time.monotonic() < deadline
            ):
                kill_marked(f"{self.marker}/{pod.spec.app}/", prefix=True)
                time.sleep(0.02)
        for p in pod.processes:
            if p.writer is not None:
                p.writer.join(timeout=2)

    def _stop_orphans(self) -> bool:
        """Stop what the pods' processes left behind (re-parented here); whether there was any."""
        assert self._reaper is not None
        with self._lock:
            mains = {p.proc.pid for pod in self._pods.values() for p in pod.processes if p.proc is not None}
        return self._reaper.stop_orphans(mains)

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


def _write_secrets(directory: Path, files: dict[str, str], user: int | None) -> Path:
    """The pod's secret files, readable by its user only; stale ones removed."""
    _own_dir(directory, user, 0o500 if user is not None else 0o700)
    for old in directory.iterdir():
        if old.name not in files:
            old.unlink()
    for name, content in files.items():
        path = directory / name
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
        with os.fdopen(fd, "w") as f:
            if user is not None:
                os.fchown(f.fileno(), user, user)
            f.write(content)
        os.replace(path.with_suffix(".tmp"), path)
    return directory


def _own_dir(path: Path, user: int | None, mode: int, tree: bool = False) -> None:
    """``path`` a directory of ``mode`` owned by ``user`` (None: this process's); with
    ``tree``, what it holds too when it belonged to someone else (a data directory from
    before apps had uids of their own)."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    owner = os.geteuid() if user is None else user
    stat = path.stat()
    if stat.st_uid != owner:
        os.chown(path, owner, owner if user is not None else os.getegid())
        if tree:
            for parent, dirs, names in os.walk(path):
                for name in dirs + names:
                    os.lchown(os.path.join(parent, name), owner, owner)
    if stat.st_mode & 0o7777 != mode:
        path.chmod(mode)


def _base_env() -> dict[str, str]:
    """What a pod's processes inherit from the host: enough to find tools, nothing secret."""
    keep = (
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TZ",
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
