"""Child processes run as whole process groups: app instances and build steps.

Each child starts in its own session, so one signal to its process group
reaches everything it forked (a gunicorn master and its workers, a shell and
its command) and nothing outlives a stop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .output import Output

#: How long a process group gets between SIGTERM and SIGKILL.
STOP_GRACE = 5.0
GROUP_POLL = 0.05


class ProcessGroup:
    """A child and everything it starts, with its output passed through."""

    def __init__(self, proc: asyncio.subprocess.Process, output: Output) -> None:
        self._proc = proc
        self._output = output
        assert proc.stdout is not None
        self._pump = asyncio.create_task(output.pump(proc.stdout))
        self.started = time.monotonic()
        self._stopping: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        echo: bool = True,
        pass_fds: Sequence[int] = (),
    ) -> ProcessGroup:
        """Start ``argv`` in a session of its own; ``echo``: pass its output to ours.

        ``pass_fds`` are inherited under the same numbers.
        """
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            pass_fds=pass_fds,
        )
        return cls(proc, Output(echo=echo))

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started

    async def wait(self) -> int:
        """Wait for the group's leader to exit, then for the rest of the group and its output."""
        code = await self._proc.wait()
        if self._stopping is not None:
            await asyncio.shield(self._stopping)
        else:
            # Stragglers (workers of a dead master) would hold the pipe open.
            self._signal(signal.SIGKILL)
            await self._finish_output()
        return code

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM the group, SIGKILL what is left of it after ``grace`` seconds.

        Idempotent, and survives cancellation of its caller: a half-stopped
        group would leave orphans.
        """
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._stop(grace))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        self._signal(signal.SIGTERM)
        # The leader may be a shell that dies at once while the app shuts down
        # gracefully, so wait for the whole group, not just the leader.
        while self._group_alive() and time.monotonic() < deadline:
            await asyncio.sleep(GROUP_POLL)
        self._signal(signal.SIGKILL)
        await self._proc.wait()
        await self._finish_output()

    def _group_alive(self) -> bool:
        return group_alive(self._proc.pid)

    async def _finish_output(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._pump), 1.0)
        except TimeoutError:
            # A grandchild that left our group still holds the pipe: stop listening.
            self._pump.cancel()

    def tail(self) -> str:
        """The last lines of the group's output, for failure reports."""
        return self._output.tail()

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self._proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _members(pgid: int) -> list[str]:
    """PIDs of the live (not zombie) processes of group ``pgid``; OSError without /proc."""
    members = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the command name, which may itself hold spaces and ")".
        state, _ppid, pgrp = stat[stat.rindex(b")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in (b"Z", b"X"):
            members.append(pid)
    return members


def _socket_inodes(pgid: int) -> set[str]:
    """Inodes of the sockets that processes of group ``pgid`` hold open."""
    inodes: set[str] = set()
    for pid in _members(pgid):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def _tcp_sockets(inodes: set[str]) -> Iterator[tuple[str, int, bool]]:
    """(local address, local port, listening) of the TCP sockets among ``inodes``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)  # the header
                rows = [line.split() for line in f]
        except OSError:
            continue
        for fields in rows:
            # local address "ADDR:PORT" in hex, state 0A is LISTEN, inode is field 9
            if fields[9] in inodes:
                address, port = fields[1].rsplit(":", 1)
                yield _address(address), int(port, 16), fields[3] == "0A"


def _address(hex_address: str) -> str:
    """/proc/net/tcp's address (hex, in host byte order per 32-bit word) as text."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 16 and words[:12] == b"\0" * 10 + b"\xff\xff":
        words = words[12:]  # an IPv4 address on a dual-stack socket
    return socket.inet_ntop(socket.AF_INET if len(words) == 4 else socket.AF_INET6, words)


def connections(pgid: int, port: int) -> int:
    """TCP connections on local ``port`` that processes of group ``pgid`` hold open."""
    return sum(1 for _, local, listening in _tcp_sockets(_socket_inodes(pgid)) if local == port and not listening)


def listening(pgid: int) -> list[str]:
    """``HOST:PORT`` of every TCP port that processes of group ``pgid`` listen on."""
    found = {
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        for host, port, listens in _tcp_sockets(_socket_inodes(pgid))
        if listens
    }
    return sorted(found)


def main_pid(leader: int) -> int:
    """The app's own main process in an instance's group: the command's, not the `sh -c`
    around it (a shell whose only child is the command), else the group's leader."""
    try:
        with open(f"/proc/{leader}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        with open(f"/proc/{leader}/task/{leader}/children") as f:
            children = f.read().split()
    except OSError:
        return leader
    if os.path.basename(argv[0]) in (b"sh", b"dash", b"bash") and len(children) == 1:
        return int(children[0])
    return leader


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still runs (zombies do not count).

    Orphans of a shell that died first are reaped by PID 1, which may take a
    while (or forever, under an init that does not reap), so a bare
    ``killpg(pgid, 0)`` would keep a dead group looking alive.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    try:
        return bool(_members(pgid))
    except OSError:  # no procfs: trust the signal
        return True


async def run(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str], echo: bool = True
) -> tuple[int, str]:
    """Run a step to completion: its exit code and the tail of its output."""
    group = await ProcessGroup.start(argv, cwd, env, echo)
    try:
        code = await group.wait()
    finally:
        await group.stop()
    return code, group.tail()
