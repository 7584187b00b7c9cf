"""What runs in the PID namespace topz shares: one record per process, read with psutil.

Which container a process belongs to is read from its cgroup (a Docker or Kubernetes
container id, as `docker ps` shows it); under paas's local backend, which has no PID
namespaces, the pod is the set of processes carrying its marker variable
(`PAAS_LOCAL_POD=<root>/<app>/<container>`), and topz lists only its own pod's.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass

import psutil

LOCAL_MARKER = "PAAS_LOCAL_POD"
_CONTAINER_ID = re.compile(r"([0-9a-f]{64})")


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    container: str
    user: str
    state: str
    rss: int  # bytes
    memory_percent: float
    cpu_percent: float  # over the sample
    started: float  # seconds since the epoch
    threads: int
    command: str

    def to_json(self) -> dict:
        return asdict(self)


def _pod_marker() -> str | None:
    """Our own pod's marker prefix (`<root>/<app>/`) under the local backend, else None."""
    own = os.environ.get(LOCAL_MARKER, "")
    return own.rsplit("/", 1)[0] + "/" if "/" in own else None


def _container(proc: psutil.Process, pod: str | None) -> str | None:
    """The container of ``proc``; None if it is not in our pod (local backend only)."""
    if pod is not None:
        try:
            marker = proc.environ().get(LOCAL_MARKER, "")
        except psutil.Error:  # gone, a zombie, a kernel thread, another user's
            return None
        return marker[len(pod):] if marker.startswith(pod) else None
    try:
        with open(f"/proc/{proc.pid}/cgroup", encoding="utf-8") as f:
            found = _CONTAINER_ID.search(f.read())
    except OSError:
        return ""
    return found.group(1)[:12] if found else ""


def snapshot(sample: float = 0.1) -> list[Process]:
    """Every process visible to us (of our pod), CPU % measured over ``sample`` seconds."""
    pod = _pod_marker()
    seen = []
    for proc in psutil.process_iter():
        container = _container(proc, pod)
        if container is None:
            continue
        try:
            proc.cpu_percent(None)  # starts the sample
        except psutil.Error:
            continue
        seen.append((proc, container))
    time.sleep(sample)
    found = []
    for proc, container in seen:
        try:
            with proc.oneshot():
                cpu = proc.cpu_percent(None)
                memory = proc.memory_info()
                command = " ".join(proc.cmdline()) or f"[{proc.name()}]"
                found.append(
                    Process(
                        pid=proc.pid,
                        ppid=proc.ppid(),
                        container=container,
                        user=_user(proc),
                        state=proc.status(),
                        rss=memory.rss,
                        memory_percent=round(proc.memory_percent(), 2),
                        cpu_percent=round(cpu, 1),
                        started=proc.create_time(),
                        threads=proc.num_threads(),
                        command=command,
                    )
                )
        except psutil.Error:  # gone meanwhile
            continue
    return sorted(found, key=lambda p: p.pid)


def _user(proc: psutil.Process) -> str:
    try:
        return proc.username()
    except (KeyError, psutil.Error):  # a uid this container's /etc/passwd doesn't name
        return str(proc.uids().real)


def text(processes: list[Process]) -> str:
    """One line per process, as topz prints them: PID, CPU %, memory %, command line."""
    lines = [f"{'PID':>7} {'CPU%':>6} {'MEM%':>6} COMMAND"]
    lines += [f"{p.pid:>7} {p.cpu_percent:>6.1f} {p.memory_percent:>6.1f} {p.command}" for p in processes]
    return "\n".join(lines) + "\n"
