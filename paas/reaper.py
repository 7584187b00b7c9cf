"""A child subreaper that stops what it inherits: `paas up`'s supervisor and the local pod
host each become one, so that a process left behind by one of their children — a daemon, a
gunicorn worker whose master was killed, an app's child that cleared its environment and
called `setsid` — is re-parented to them when its parent exits, rather than to init, and is
stopped there. Re-parenting is the kernel's; nothing inside a process tree can escape it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """For ``preexec_fn``: the child gets SIGTERM when the thread that started it dies."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Reaper:
    def __init__(self) -> None:
        _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1)
        self._zombies: set[int] = set()

    def stop_orphans(self, mains: set[int]) -> bool:
        """SIGKILL every child but ``mains`` (the ones this process started), reap those that
        died; whether there were any."""
        found = [child for child in _children() if child not in mains]
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._zombies.add(pid)
        for pid in list(self._zombies):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self._zombies.discard(pid)
        return bool(found)


def _children() -> list[int]:
    """The children of this process's main thread, where the kernel re-parents a subreaper's
    orphans (its first live thread); a kernel without CONFIG_PROC_CHILDREN is asked process
    by process."""
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(child) for child in f.read().split()]
    except FileNotFoundError:
        return [p for p in _pids() if _parent(p) == pid]


def _pids() -> list[int]:
    return [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
