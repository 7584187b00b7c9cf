"""Which uid each app's processes run as on the local backend, when the pod host is root.

One uid per app, taken from a configured range (``PAAS_APP_UIDS``, default 200000-299999) —
not users made with ``useradd``: a range needs no change to the system's user database, is
reclaimed with nothing left behind, and is what container runtimes do for user namespaces.
Uids are handed out in order and never reused by this control plane (a new app never
inherits files a deleted one left, say in /tmp); the next one and each app's are kept in
``pods/uids.json``, written only by the pod host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from paas.errors import BackendUnavailable, PaasError


class AppUids:
    def __init__(self, path: Path, uids: range) -> None:
        self.path, self.range = path, uids
        self._lock = threading.Lock()
        try:
            kept = json.loads(path.read_text())
            self._apps: dict[str, int] = {str(k): int(v) for k, v in kept["apps"].items()}
            self._next = int(kept["next"])
        except FileNotFoundError:
            self._apps, self._next = {}, uids.start
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise PaasError(f"cannot read the apps' uids from {path}: {e}; remove it to start afresh") from None

    def uid(self, app: str) -> int:
        """The uid of ``app``, given it the first time it is asked for."""
        with self._lock:
            if app not in self._apps:
                if self._next not in self.range:
                    raise BackendUnavailable(
                        f"no uid left for {app} in PAAS_APP_UIDS ({self.range.start}-{self.range.stop - 1})"
                    )
                self._apps[app] = self._next
                self._next += 1
                self._save()
            return self._apps[app]

    def forget(self, app: str) -> None:
        with self._lock:
            if self._apps.pop(app, None) is not None:
                self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"next": self._next, "apps": self._apps}, f)
        os.replace(tmp, self.path)


def check_reachable(uid: int, pods_root: Path) -> None:
    """Fail in one sentence unless ``uid`` can run this installation's interpreter, import the
    pod's packages and reach the pods' directory: apps run as such uids, not as root."""
    probe = (
        "import os, sys\n"
        "import git_sync, paas_runtime\n"
        "sys.exit(0 if os.access(sys.argv[1], os.X_OK) else 3)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", probe, str(pods_root)],
            user=uid, group=uid, extra_groups=[], capture_output=True, text=True, timeout=30, cwd="/",
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/"},
        )
    except OSError as e:
        done = subprocess.CompletedProcess([], 126, "", e.strerror or str(e))
    if done.returncode == 0:
        return
    what = (
        f"reach the pods' directory {pods_root} (a directory above it is private)"
        if done.returncode == 3
        else f"run {sys.executable} with paas installed ({_last_line(done.stderr)})"
    )
    raise PaasError(
        f"apps run as their own users (uid {uid}, PAAS_APP_UIDS), who cannot {what}: install paas and put "
        "its data directory where every user may read and traverse them (e.g. /opt/paas, /var/lib/paas), "
        "or set PAAS_APP_UIDS=off to run apps as root — who can then read the platform's secrets"
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "it did not start"
