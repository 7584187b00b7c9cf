"""One control plane per data directory: an exclusive ``flock`` on ``<data>/control-plane.lock``.

The kernel drops a ``flock`` when the last descriptor of its open file closes, so a
control plane that was killed (even with SIGKILL of its whole process group) leaves no
stale lock behind: the next start simply takes it. The file also says who holds it (pid,
URL), so a second ``paas up`` can name the running one in its one-line refusal.

``paas up`` takes the lock in gunicorn's master before anything else; the worker forked
from it inherits the descriptor (and with it the lock), which :func:`held` recognises.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from paas.errors import PaasError

LOCK_FILE = "control-plane.lock"
_held: dict[Path, int] = {}  # data dir (resolved) -> descriptor holding its lock


class DataDirBusy(PaasError):
    status = 409


def _key(data_dir: Path) -> Path:
    return data_dir.expanduser().resolve()


def held(data_dir: Path) -> bool:
    """Whether this process (or the parent it was forked from) holds the lock."""
    return _key(data_dir) in _held


def acquire(data_dir: Path, url: str) -> None:
    """Take the data directory's lock for this process; raise DataDirBusy naming the holder."""
    key = _key(data_dir)
    if key in _held:
        return
    key.mkdir(parents=True, exist_ok=True)
    fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _describe(fd)
        os.close(fd)
        raise DataDirBusy(
            f"another control plane{holder} is running on the data directory {key}; "
            "stop it first or pass another --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "url": url}).encode() + b"\n", 0)
    _held[key] = fd


def descriptor(data_dir: Path) -> int:
    """The descriptor through which this process holds the lock (to hand to a child)."""
    return _held[_key(data_dir)]


def adopt(data_dir: Path, fd: int) -> None:
    """Hold the lock through ``fd``, an inherited descriptor of the lock file `paas up` locked
    (a flock belongs to the open file, shared by every descriptor of it)."""
    os.set_inheritable(fd, False)
    _held[_key(data_dir)] = fd


def release(data_dir: Path) -> None:
    fd = _held.pop(_key(data_dir), None)
    if fd is not None:
        os.close(fd)


def _describe(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return ""
    parts = [f"pid {info['pid']}" if info.get("pid") else "", str(info.get("url") or "")]
    shown = ", ".join(p for p in parts if p)
    return f" ({shown})" if shown else ""
