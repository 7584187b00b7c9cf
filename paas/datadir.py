"""The data directory kept private: the store (and its WAL), the repositories, the token, the
CA, the router's table, the logs — nobody but the control plane's user reads any of it.

`paas up` runs with umask 077, so whatever the platform makes is 0600 / 0700; ``secure``
also mends a data directory an earlier version made 0644 / 0755. The directory itself is
0700 — or 0711 when apps run as uids of their own (the local backend as root), who must pass
through it to reach their pods' directories (``pods/`` is 0711 then, each pod's own
directory owned by its app): passing through lets no one list or read anything, and every
entry at the top is 0700 / 0600 itself.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PODS = "pods"


def secure(data_dir: Path, apps_pass_through: bool) -> None:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o711 if apps_pass_through else 0o700)
    if apps_pass_through:
        (data_dir / PODS).mkdir(mode=0o711, exist_ok=True)
    for entry in os.scandir(data_dir):
        if entry.is_symlink():
            continue
        if entry.is_dir():
            mode = 0o711 if entry.name == PODS and apps_pass_through else 0o700
        else:
            mode = 0o600
        if stat.S_IMODE(entry.stat().st_mode) != mode:
            os.chmod(entry.path, mode)
