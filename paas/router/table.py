"""The table as the router holds it: read from the control plane's file whenever the file
changes, kept as it was when the file is missing or unreadable (the control plane may be
restarting), swapped whole so a connection sees one table or the next, never a mix."""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from paas_runtime.proxy import Backend

log = logging.getLogger("paas.router")


@dataclass(frozen=True)
class App:
    name: str
    backend: Backend  # counts the app's open connections through the router
    tls: bool
    serving: bool


@dataclass(frozen=True)
class Table:
    domain: str = "localhost"
    hosts: dict[str, App] = field(default_factory=dict)

    def find(self, host: str) -> App | None:
        return self.hosts.get(host.lower().rstrip("."))


def parse(data: dict, previous: Table) -> Table:
    """The table in ``data``; an app whose address is unchanged keeps its backend object."""
    kept = {(a.backend.host, a.backend.port): a.backend for a in previous.hosts.values()}
    apps = {}
    for name, route in data["apps"].items():
        where = (str(route["address"]), int(route["port"]))
        backend = kept.get(where) or Backend(where[1], where[0])
        apps[name] = App(name, backend, bool(route["tls"]), bool(route["serving"]))
    hosts = {str(host): apps[name] for host, name in data["hosts"].items() if name in apps}
    return Table(str(data.get("domain") or previous.domain), hosts)


class TableFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.table = Table()
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()  # the poll and a router finding no app may both read it

    def refresh(self) -> bool:
        """Read the file again if it changed; whether the table did."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> bool:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return False
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return False
        try:
            table = parse(json.loads(self.path.read_text()), self.table)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("router: kept the previous table: %s could not be read (%s)", self.path, e)
            self._stamp = stamp
            return False
        self._stamp, self.table = stamp, table
        return True
