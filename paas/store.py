"""The app store: apps, releases and events in SQLite under the data directory."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from paas import manifest as manifest_mod
from paas.errors import AppExists, AppNotFound, PortInUse, RevisionNotFound
from paas.manifest import Manifest

SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (
    name TEXT PRIMARY KEY,
    manifest TEXT NOT NULL,
    port INTEGER NOT NULL UNIQUE,
    deploy_token TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    revision TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (app, number)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_app ON events(app, id);
"""

# Release life cycle: pending (stored, not yet served) -> live -> superseded, or -> failed.
PENDING, LIVE, SUPERSEDED, FAILED = "pending", "live", "superseded", "failed"


@dataclass(frozen=True)
class App:
    name: str
    manifest: Manifest
    port: int
    deploy_token: str
    created: float

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "port": self.port,
            "created": self.created,
            "manifest": self.manifest.to_dict(),
        }


@dataclass(frozen=True)
class Release:
    app: str
    number: int
    revision: str
    status: str
    message: str
    created: float
    updated: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Event:
    app: str
    time: float
    kind: str
    message: str

    def to_json(self) -> dict:
        return asdict(self)


class Store:
    """Thread-safe access to the SQLite database (one connection, one lock, WAL)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # apps

    def create_app(self, manifest: Manifest, port: int, deploy_token: str) -> App:
        app = App(manifest.name, manifest, port, deploy_token, time.time())
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO apps (name, manifest, port, deploy_token, created) VALUES (?,?,?,?,?)",
                    (app.name, json.dumps(manifest.to_dict()), port, deploy_token, app.created),
                )
        except sqlite3.IntegrityError as e:
            if "apps.name" in str(e):
                raise AppExists(f"app {app.name!r} already exists") from None
            raise PortInUse(f"port {port} is already used by another app") from None
        return app

    def get_app(self, name: str) -> App:
        rows = self._query("SELECT * FROM apps WHERE name = ?", (name,))
        if not rows:
            raise AppNotFound(f"app {name!r} not found")
        return _app(rows[0])

    def list_apps(self) -> list[App]:
        return [_app(row) for row in self._query("SELECT * FROM apps ORDER BY name")]

    def delete_app(self, name: str) -> None:
        with self._lock:
            deleted = self._db.execute("DELETE FROM apps WHERE name = ?", (name,)).rowcount
        if not deleted:
            raise AppNotFound(f"app {name!r} not found")

    def used_ports(self) -> set[int]:
        return {row["port"] for row in self._query("SELECT port FROM apps")}

    # releases

    def add_release(self, app: str, revision: str, status: str = PENDING, message: str = "") -> Release:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (number,) = self._db.execute(
                    "SELECT COALESCE(MAX(number), 0) + 1 FROM releases WHERE app = ?", (app,)
                ).fetchone()
                self._db.execute(
                    "INSERT INTO releases VALUES (?,?,?,?,?,?,?)",
                    (app, number, revision, status, message, now, now),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Release(app, number, revision, status, message, now, now)

    def releases(self, app: str) -> list[Release]:
        """Newest first."""
        rows = self._query("SELECT * FROM releases WHERE app = ? ORDER BY number DESC", (app,))
        return [Release(**dict(row)) for row in rows]

    def release(self, app: str, number: int) -> Release:
        rows = self._query("SELECT * FROM releases WHERE app = ? AND number = ?", (app, number))
        if not rows:
            raise RevisionNotFound(f"app {app!r} has no release v{number}")
        return Release(**dict(rows[0]))

    def set_release_status(self, app: str, number: int, status: str, message: str = "") -> None:
        with self._lock:
            self._db.execute(
                "UPDATE releases SET status = ?, message = ?, updated = ? WHERE app = ? AND number = ?",
                (status, message, time.time(), app, number),
            )

    # events

    def add_event(self, app: str, kind: str, message: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO events (app, time, kind, message) VALUES (?,?,?,?)",
                (app, time.time(), kind, message),
            )

    def events(self, app: str, limit: int = 50) -> list[Event]:
        rows = self._query(
            "SELECT app, time, kind, message FROM events WHERE app = ? ORDER BY id DESC LIMIT ?",
            (app, limit),
        )
        return [Event(**dict(row)) for row in rows]


def _app(row: sqlite3.Row) -> App:
    manifest = manifest_mod.validate(json.loads(row["manifest"]))
    return App(row["name"], manifest, row["port"], row["deploy_token"], row["created"])
