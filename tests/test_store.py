"""A data directory written by an earlier paas: its schema is migrated in place when `paas
up` starts, its apps keep their releases, and an app whose stored manifest a tightened rule
now refuses is listed with the problem (its pod left as it is) until `paas apply` fixes it."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time

import pytest

from helpers import (
    ControlPlane,
    fill_disk,
    free_port,
    get_text,
    git,
    head_of,
    set_text,
    small_disk,
    stdlib_app,
    stdlib_manifest,
    wait_for,
)
from paas.diskspace import DiskFull
from paas.manifest import validate
from paas.store import VERSION, Store, allowed

STATUSES = ("pending", "live", "superseded", "failed", "cancelled")

pytestmark = pytest.mark.slow

# The schema of the first release of paas, before PRAGMA user_version was set: a fixture of
# what is on users' disks, so it stays as it was written.
FIRST_SCHEMA = """
CREATE TABLE apps (name TEXT PRIMARY KEY, manifest TEXT NOT NULL, port INTEGER NOT NULL UNIQUE,
                   deploy_token TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE releases (app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE, number INTEGER NOT NULL,
                       revision TEXT NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
                       created REAL NOT NULL, updated REAL NOT NULL, PRIMARY KEY (app, number));
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
                     time REAL NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX events_app ON events(app, id);
"""


def first_release_data(data_dir, tmp_path, apps: dict[str, dict]) -> None:
    """A data directory as the first release left it: the database, and each app's bare
    repository holding its served revision (the stdlib app answering the app's name)."""
    (data_dir / "repos").mkdir(parents=True)
    db = sqlite3.connect(data_dir / "paas.sqlite3")
    db.executescript(FIRST_SCHEMA)
    for name, manifest in apps.items():
        work = stdlib_app(tmp_path / "src" / name, name)
        bare = data_dir / "repos" / f"{name}.git"
        git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
        revision = head_of(work)
        git("update-ref", "refs/paas/deploy", revision, cwd=bare)
        db.execute("INSERT INTO apps VALUES (?, ?, ?, ?, ?)", (name, json.dumps(manifest), free_port(), "t0ken", time.time()))
        db.execute("INSERT INTO releases VALUES (?, 1, ?, 'live', ?, ?, ?)", (name, revision, name, time.time(), time.time()))
    db.commit()
    db.close()


def test_a_first_release_data_directory_is_migrated_and_a_no_longer_valid_app_is_listed(tmp_path):
    data = tmp_path / "data"
    good = {"name": "kept", "runtime": "python", "run": "python server.py", "healthcheck": {"timeout": 20}}
    stale = good | {"name": "stale", "env": {"PAAS_MODE": "x"}}  # PAAS_* is the platform's now
    lost = good | {"name": "lost"}
    first_release_data(data, tmp_path, {"kept": good, "stale": stale, "lost": lost})
    shutil.rmtree(data / "repos" / "lost.git")  # a repository gone from the data directory
    cp = ControlPlane(data, tmp_path / "cli-config").start()
    try:
        db = sqlite3.connect(data / "paas.sqlite3")
        assert db.execute("PRAGMA user_version").fetchone() == (VERSION,)
        db.close()
        listed = {a["name"]: a for a in cp.api("GET", "/apps").json()["apps"]}
        assert set(listed) == {"kept", "stale", "lost"}
        assert listed["kept"]["problem"] is None
        assert listed["stale"]["problem"] == "invalid manifest: env: PAAS_MODE is set by the platform"
        releases = cp.api("GET", "/apps/kept/releases").json()["releases"]
        assert [(r["number"], r["message"], r["config"], r["reason"]) for r in releases] == [(1, "kept", 0, "")]
        wait_for(lambda: get_text(listed["kept"]["url"]) == "kept", 60, 0.1, "the migrated app serving its release")
        shown = cp.cli("status", "stale").stdout.splitlines()
        assert shown[2] == ("problem:   invalid manifest: env: PAAS_MODE is set by the platform: "
                            "fix it with `paas apply -f FILE`")
        assert get_text(listed["stale"]["url"], timeout=0.5) is None  # its pod left as it is: none
        # The migrated app deploys as ever; apply fixes the stale one, which then serves.
        repo = tmp_path / "src" / "kept"
        set_text(repo, "still here")
        cp.push(repo, "kept")
        assert get_text(listed["kept"]["url"]) == "still here"
        (tmp_path / "fixed.yaml").write_text(stdlib_manifest("stale"))
        fixed = cp.cli("apply", "-f", str(tmp_path / "fixed.yaml"))
        assert fixed.stdout.splitlines() == [
            "stale: 1 change(s), the pod was replaced (these changes need a new pod):",
            "  manifest: invalid manifest: env: PAAS_MODE is set by the platform -> valid",
        ]
        assert cp.api("GET", "/apps/stale").json()["problem"] is None
        wait_for(lambda: get_text(listed["stale"]["url"]) == "stale", 60, 0.1, "the fixed app serving")
        events = [e["message"] for e in cp.api("GET", "/apps/lost").json()["events"] if e["kind"] == "error"]
        assert events[-1] == "its git repository was missing: an empty one was made; git push to deploy it again"
        assert cp.push(tmp_path / "src" / "lost", "lost").returncode == 0
        assert get_text(listed["lost"]["url"]) == "lost"
    finally:
        for name in ("kept", "stale", "lost"):
            cp.api("DELETE", f"/apps/{name}")
        cp.stop()


def test_a_data_directory_from_a_newer_paas_stops_paas_up_in_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "paas.sqlite3")
    db.execute("PRAGMA user_version = 99")
    db.close()
    up = subprocess.run([sys.executable, "-m", "paas.cli", "up", "--port", "1"], capture_output=True, text=True,
                        env={"PAAS_DATA": str(data), "PAAS_TOKEN": "x" * 16, "PATH": "/usr/bin:/bin"}, timeout=60)
    assert up.returncode != 0
    assert up.stderr == f"error: the data directory was written by a newer paas (schema 99, this one knows {VERSION})\n"


# Every move a release's status may make; all others are refused.
MOVES = {
    ("pending", "live"), ("pending", "failed"), ("pending", "cancelled"),
    ("live", "superseded"),
    ("superseded", "live"),  # it served; a pod went back to it
}


@pytest.mark.parametrize("old", STATUSES)
@pytest.mark.parametrize("new", STATUSES)
def test_the_release_state_machine(old, new):
    assert allowed(old, new) is ((old, new) in MOVES)


def test_the_store_refuses_a_forbidden_move_and_keeps_the_status(tmp_path):
    store = Store.in_data_dir(tmp_path)
    try:
        store.create_app(validate({"name": "sm"}), 10001, "t0ken")
        failed, cancelled, served = (store.add_release("sm", rev * 40).number for rev in "abc")
        assert store.set_release_status("sm", failed, "failed", "it did not build")
        assert store.set_release_status("sm", cancelled, "cancelled", "a newer release came first")
        assert store.set_release_status("sm", served, "live")
        for number, status, reason in ((failed, "failed", "it did not build"),
                                       (cancelled, "cancelled", "a newer release came first")):
            assert not store.set_release_status("sm", number, "live")
            assert not store.set_release_status("sm", number, "pending")
            kept = store.release("sm", number)
            assert (kept.status, kept.reason) == (status, reason)
        assert not store.set_release_status("sm", served, "failed")  # it served: it can't have failed
        assert store.set_release_status("sm", served, "superseded") and store.set_release_status("sm", served, "live")
        assert [r.status for r in store.releases("sm")] == ["live", "cancelled", "failed"]
    finally:
        store.close()


def test_a_full_disk_is_one_sentence_from_the_store(tmp_path):
    with small_disk(tmp_path / "data", 4) as data:
        store = Store.in_data_dir(data)
        try:
            store.create_app(validate({"name": "full"}), 10002, "t0ken")
            store.add_release("full", "a" * 40)
            fill_disk(data)
            with pytest.raises(DiskFull) as refused:
                for _ in range(200):  # until the write-ahead log has to grow
                    store.set_config("full", {"BIG": "x" * 30000})
            free = shutil.disk_usage(data).free // (1024 * 1024)
            assert refused.value.message == f"no space left on the data directory ({free} MB free)"
            assert refused.value.status == 507
            assert store.releases("full")[0].status == "pending"  # what was stored is still there
        finally:
            store.close()
