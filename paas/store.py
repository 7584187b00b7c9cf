"""The app store: apps, releases and events in SQLite under the data directory."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from paas import diskspace
from paas import manifest as manifest_mod
from paas.ca import KeyPair
from paas.errors import AppExists, AppNotFound, InvalidManifest, PaasError, PortInUse, RevisionNotFound
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

class StoreError(PaasError):
    status = 500


# Each step upgrades the schema from its index to the next version (PRAGMA user_version);
# a database made before versions existed is version 0 and has the tables above.
MIGRATIONS: tuple[str, ...] = (
    """
    ALTER TABLE apps ADD COLUMN git_password TEXT NOT NULL DEFAULT '';
    ALTER TABLE releases ADD COLUMN reason TEXT NOT NULL DEFAULT '';
    CREATE TABLE restarts (
        app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        container TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (app, container)
    );
    """,
    # Config: a versioned set of variables per app; each release carries the config version
    # it serves with; `generation` counts the app's restarts (`paas restart`).
    """
    CREATE TABLE configs (
        app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        vars TEXT NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (app, version)
    );
    ALTER TABLE apps ADD COLUMN config INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE apps ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE releases ADD COLUMN config INTEGER NOT NULL DEFAULT 0;
    """,
    # The certificate an app's owner added for its names outside the platform's domain
    # (`paas certs add`): the chain and its key, a secret like the repository password.
    """
    CREATE TABLE certificates (
        app TEXT PRIMARY KEY REFERENCES apps(name) ON DELETE CASCADE,
        chain TEXT NOT NULL,
        key TEXT NOT NULL,
        added REAL NOT NULL
    );
    """,
)
VERSION = len(MIGRATIONS)

# Release life cycle: pending (stored, not yet served) -> live -> superseded; or -> failed
# (it did not build or become healthy), or -> cancelled (it never served: a newer release
# came first, or the control plane stopped before it served).
PENDING, LIVE, SUPERSEDED, FAILED, CANCELLED = "pending", "live", "superseded", "failed", "cancelled"
SERVED = (LIVE, SUPERSEDED)
ENDED = (FAILED, CANCELLED)  # never served, and never will
# The moves a release's status may make. A release that never served (failed, cancelled) is
# over: nothing brings it back, not even its revision serving again (a pod that fetched it
# before the deploy ref went back). One that served may serve again (a pod back on it after
# a newer one served, which the reconciler records as it sees it).
TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({LIVE, FAILED, CANCELLED}),
    LIVE: frozenset({SUPERSEDED}),
    SUPERSEDED: frozenset({LIVE}),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}


def allowed(old: str, new: str) -> bool:
    """Whether a release whose status is ``old`` may become ``new``."""
    return new in TRANSITIONS.get(old, frozenset())


@dataclass(frozen=True)
class App:
    name: str
    manifest: Manifest
    port: int
    deploy_token: str = field(repr=False)
    created: float
    # The password of a remote repository given as user:password@ in the manifest: kept
    # apart from the manifest, handed to git-sync as a file, shown nowhere.
    git_password: str = field(default="", repr=False)
    config: int = 0  # the config version pods are told to serve with (0: none set yet)
    generation: int = 0  # bumped by each `paas restart`
    # Why the stored manifest no longer validates (a rule tightened since it was stored):
    # the app is listed and shown with it, and its pod is left as it is.
    problem: str = ""

    def to_json(self) -> dict:
        manifest = self.manifest.to_dict()
        if self.git_password and manifest["source"]["repo"]:
            manifest["source"]["repo"] = manifest_mod.with_masked_password(manifest["source"]["repo"])
        return {
            "name": self.name,
            "port": self.port,
            "created": self.created,
            "manifest": manifest,
            "config_version": self.config,
            "problem": self.problem or None,
        }


@dataclass(frozen=True)
class Release:
    app: str
    number: int
    revision: str
    status: str
    message: str  # the commit's subject, or what the release is (a rollback, a config change)
    created: float
    updated: float
    reason: str = ""  # why it failed or was cancelled
    config: int = 0  # the config version it serves with

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
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._locked():
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        """The connection, held; SQLite's own errors become one sentence (a full disk: which
        disk and how much room is left), never a traceback."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.OperationalError as e:
                if diskspace.is_full(e):
                    raise diskspace.no_space(self.path.parent) from None
                raise StoreError(f"the store ({self.path}) could not be read or written: {e}") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, held; rolled back on any error (if SQLite hasn't already:
        it rolls back by itself when the disk is full)."""
        with self._locked() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        """Bring the schema to VERSION in place, one step per transaction."""
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version == 0:
            self._db.executescript(SCHEMA)
        if version > VERSION:
            raise StoreError(
                f"the data directory was written by a newer paas (schema {version}, this one knows {VERSION})"
            )
        for number in range(version, VERSION):
            self._db.executescript(f"BEGIN; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1}; COMMIT;")

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> Store:
        return cls(data_dir / "paas.sqlite3")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def changes(self) -> int:
        """Rows written through this store so far: a view compares two readings to tell
        whether anything it shows may have changed, without a query."""
        return self._db.total_changes

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._locked() as db:
            return db.execute(sql, args).fetchall()

    # apps

    def create_app(self, manifest: Manifest, port: int, deploy_token: str, git_password: str = "") -> App:
        app = App(manifest.name, manifest, port, deploy_token, time.time(), git_password)
        try:
            with self._locked() as db:
                db.execute(
                    "INSERT INTO apps (name, manifest, port, deploy_token, created, git_password)"
                    " VALUES (?,?,?,?,?,?)",
                    (app.name, json.dumps(manifest.to_dict()), port, deploy_token, app.created, git_password),
                )
        except sqlite3.IntegrityError as e:
            if "apps.name" in str(e):
                raise AppExists(f"app {app.name!r} already exists: change it with `paas apply -f FILE`") from None
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
        with self._locked() as db:
            deleted = db.execute("DELETE FROM apps WHERE name = ?", (name,)).rowcount
        if not deleted:
            raise AppNotFound(f"app {name!r} not found")

    def update_app(self, name: str, manifest: Manifest, port: int, git_password: str) -> App:
        """Store a changed manifest (and port, and the password of its remote repository, which
        goes with the manifest's URL: paas.credentials); raises PortInUse if the port is another app's."""
        try:
            with self._locked() as db:
                db.execute(
                    "UPDATE apps SET manifest = ?, port = ?, git_password = ? WHERE name = ?",
                    (json.dumps(manifest.to_dict()), port, git_password, name),
                )
        except sqlite3.IntegrityError:
            raise PortInUse(f"port {port} is already used by another app") from None
        return self.get_app(name)

    def restarted(self, name: str) -> int:
        """Count a restart of the app; its new generation."""
        with self._locked() as db:
            db.execute("UPDATE apps SET generation = generation + 1 WHERE name = ?", (name,))
        return self.get_app(name).generation

    # config

    def config(self, app: str, version: int | None = None) -> dict[str, str]:
        """The app's variables at ``version`` (default: its current one); {} before any."""
        if version is None:
            version = self.get_app(app).config
        rows = self._query("SELECT vars FROM configs WHERE app = ? AND version = ?", (app, version))
        return json.loads(rows[0]["vars"]) if rows else {}

    def set_config(self, app: str, variables: dict[str, str]) -> int:
        """Store ``variables`` as the app's next config version and make it current."""
        with self._transaction() as db:
            (version,) = db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM configs WHERE app = ?", (app,)).fetchone()
            db.execute("INSERT INTO configs VALUES (?,?,?,?)", (app, version, json.dumps(variables), time.time()))
            db.execute("UPDATE apps SET config = ? WHERE name = ?", (version, app))
        return version

    def use_config(self, app: str, version: int) -> None:
        """Make an existing config version current again (a rollback, a failed change undone)."""
        with self._locked() as db:
            db.execute("UPDATE apps SET config = ? WHERE name = ?", (version, app))

    def used_ports(self) -> set[int]:
        return {row["port"] for row in self._query("SELECT port FROM apps")}

    # the certificate added for an app's own names

    def certificate(self, app: str) -> KeyPair | None:
        rows = self._query("SELECT chain, key FROM certificates WHERE app = ?", (app,))
        return KeyPair(rows[0]["chain"], rows[0]["key"]) if rows else None

    def set_certificate(self, app: str, pair: KeyPair) -> None:
        """Store ``pair`` as the app's added certificate, replacing the one before."""
        with self._locked() as db:
            db.execute(
                "INSERT INTO certificates VALUES (?,?,?,?)"
                " ON CONFLICT (app) DO UPDATE SET chain = excluded.chain, key = excluded.key, added = excluded.added",
                (app, pair.certificate, pair.key, time.time()),
            )

    def remove_certificate(self, app: str) -> bool:
        """Forget the app's added certificate; False when it had none."""
        with self._locked() as db:
            return db.execute("DELETE FROM certificates WHERE app = ?", (app,)).rowcount > 0

    # releases

    def add_release(self, app: str, revision: str, message: str = "", config: int | None = None) -> Release:
        """A new release of ``revision`` with ``config`` (default: the app's current config);
        every release begins pending."""
        now = time.time()
        with self._transaction() as db:
            (number,) = db.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM releases WHERE app = ?", (app,)).fetchone()
            if config is None:
                (config,) = db.execute("SELECT config FROM apps WHERE name = ?", (app,)).fetchone()
            db.execute(
                "INSERT INTO releases (app, number, revision, status, message, created, updated, config)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (app, number, revision, PENDING, message, now, now, config),
            )
        return Release(app, number, revision, PENDING, message, now, now, "", config)

    def releases(self, app: str) -> list[Release]:
        """Newest first."""
        rows = self._query("SELECT * FROM releases WHERE app = ? ORDER BY number DESC", (app,))
        return [Release(**dict(row)) for row in rows]

    def release(self, app: str, number: int) -> Release:
        rows = self._query("SELECT * FROM releases WHERE app = ? AND number = ?", (app, number))
        if not rows:
            raise RevisionNotFound(f"app {app!r} has no release v{number}")
        return Release(**dict(rows[0]))

    def served(self, app: str) -> Release | None:
        """The release that serves (or served last): the one whose status is live."""
        return next((r for r in self.releases(app) if r.status == LIVE), None)

    def set_release_status(self, app: str, number: int, status: str, reason: str = "") -> bool:
        """Move release ``number`` to ``status`` if TRANSITIONS allows it from the status it has
        — checked by the UPDATE itself, so no other writer slips in between; whether it moved."""
        sources = [old for old in TRANSITIONS if allowed(old, status)]
        if not sources:
            return False
        marks = ",".join("?" * len(sources))
        with self._locked() as db:
            moved = db.execute(
                "UPDATE releases SET status = ?, reason = ?, updated = ?"
                f" WHERE app = ? AND number = ? AND status IN ({marks})",
                (status, reason, time.time(), app, number, *sources),
            ).rowcount
        return moved == 1

    # restart counts seen by the reconciler (kept so a restarted control plane doesn't repeat events)

    def restarts(self) -> dict[tuple[str, str], int]:
        return {(r["app"], r["container"]): r["count"] for r in self._query("SELECT * FROM restarts")}

    def set_restarts(self, app: str, container: str, count: int) -> None:
        with self._locked() as db:
            db.execute(
                "INSERT INTO restarts VALUES (?,?,?) ON CONFLICT (app, container) DO UPDATE SET count = ?",
                (app, container, count, count),
            )

    # events

    def add_event(self, app: str, kind: str, message: str) -> None:
        with self._locked() as db:
            db.execute(
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
    data = json.loads(row["manifest"])
    problem = ""
    try:
        manifest = manifest_mod.validate(data)
    except InvalidManifest as e:
        # Stored when it was valid: keep the app listable, say what is wrong now.
        manifest, problem = manifest_mod.lenient(data), e.message
    return App(
        row["name"], manifest, row["port"], row["deploy_token"], row["created"], row["git_password"],
        row["config"], row["generation"], problem,
    )
