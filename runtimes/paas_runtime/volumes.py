"""The sizes of the app's volumes (`PAAS_VOLUME_<NAME>`), for the status endpoint: walked at
most every `EVERY` seconds, and at most `MAX_ENTRIES` entries each (a size is then a floor)."""

from __future__ import annotations

import os
import time

EVERY = 30.0
MAX_ENTRIES = 100_000
PREFIX = "PAAS_VOLUME_"


class Sizes:
    def __init__(self, env: dict[str, str]) -> None:
        self.paths = {k[len(PREFIX):].lower().replace("_", "-"): v for k, v in env.items()
                      if k.startswith(PREFIX) and k != "PAAS_VOLUME_LINKS"}
        self._at = 0.0
        self._sizes: dict[str, int] = {}

    def get(self) -> dict[str, int]:
        if self.paths and time.monotonic() - self._at >= EVERY:
            self._sizes = {name: _size(path) for name, path in self.paths.items()}
            self._at = time.monotonic()
        return self._sizes


def _size(top: str) -> int:
    total, seen = 0, 0
    for root, _dirs, files in os.walk(top):
        for name in files:
            seen += 1
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
        if seen > MAX_ENTRIES:
            break
    return total
