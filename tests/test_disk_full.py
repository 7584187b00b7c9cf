"""A data directory that fills up, as a probe fills one: a real tmpfs mounted as `paas up`'s
data directory and a file written until the disk is full. A push then fails within seconds
naming the room left, releases its lock, and its release is failed — never served, not once
space comes back, not after a restart — while what served serves on."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import (
    ControlPlane,
    auth_env,
    fill_disk,
    get_text,
    git,
    head_of,
    passable,
    set_text,
    small_disk,
    stdlib_app,
    stdlib_manifest,
    wait_for,
)
from paas.backends.logfiles import LogWriter

pytestmark = pytest.mark.slow
MIN_FREE_MB = 16  # the test's PAAS_MIN_FREE_MB: the 64 MB disk holds the pods and a deploy
PROMPT = 15.0  # a push that fails for lack of room answers within this many seconds
# A file of 40 MB that git stores in a few KB (and writes out whole: not zeros, which it
# writes as a sparse file).
LARGE = b"paas " * (8 * 1024 * 1024)


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory, deps_cache: Path) -> Iterator[tuple[ControlPlane, Path]]:
    """`paas up` on a 64 MB data directory of its own (the dependency cache lives elsewhere)."""
    base = tmp_path_factory.mktemp("disk")
    with small_disk(passable(base / "data"), 64) as data:
        cp = ControlPlane(base / "data", base / "cli-config", cache=deps_cache)
        cp.env = cp.env | {"PAAS_MIN_FREE_MB": str(MIN_FREE_MB)}
        cp.start()
        try:
            yield cp, data
        finally:
            cp.stop()


def free_mb(data: Path) -> int:
    return shutil.disk_usage(data).free // (1024 * 1024)


def remote_lines(stderr: str) -> list[str]:
    return [line.removeprefix("remote: ").rstrip() for line in stderr.splitlines() if line.startswith("remote: paas:")]


def statuses(cp: ControlPlane, app: str) -> list[str]:
    return [r["status"] for r in cp.api("GET", f"/apps/{app}/releases").json()["releases"]]


def timed_push(cp: ControlPlane, repo: Path, app: str, **kwargs):
    began = time.monotonic()
    pushed = cp.push(repo, app, check=False, timeout=120, **kwargs)
    return pushed, time.monotonic() - began


def no_space_line(lines: list[str], before: int, after: int) -> int:
    """The MB free the push named (``no space left on the data directory (N MB free)``),
    checked to lie between what was free before and after it."""
    named = [m for line in lines if (m := re.search(r"no space left on the data directory \((\d+) MB free\)", line))]
    assert named, lines
    free = int(named[0].group(1))
    assert after <= free <= before, (free, before, after)
    return free


def test_a_push_with_too_little_room_fails_at_once_and_never_serves(disk, tmp_path):
    cp, data = disk
    repo = stdlib_app(tmp_path / "room", "one")
    url = cp.create(stdlib_manifest("room"))["url"]
    cp.push(repo, "room")
    good = head_of(repo)
    filler = fill_disk(data, leave=2 * 1024 * 1024)
    try:
        set_text(repo, "two")
        for attempt in (2, 3):  # the second push answers as promptly: the first let go of the lock
            before = free_mb(data)
            pushed, seconds = timed_push(cp, repo, "room")
            lines = remote_lines(pushed.stderr)
            assert pushed.returncode != 0 and seconds < PROMPT, (seconds, pushed.stderr)
            assert lines[0].startswith(f"paas: v{attempt} stored"), lines
            assert lines[1].startswith("paas: failed: no space left on the data directory ("), lines
            no_space_line(lines, before, free_mb(data))
            assert f"paas:   {data} has " in lines[2] and f"a deploy needs {MIN_FREE_MB} MB (PAAS_MIN_FREE_MB)" in lines[2]
            assert lines[-1] == f"paas: v1 keeps serving; the branch stays at {good[:12]}"
            assert " ! [remote rejected] main -> main (deploy failed; v1 keeps serving)" in pushed.stderr
            assert get_text(url) == "one"
        assert statuses(cp, "room") == ["failed", "failed", "live"]
    finally:
        filler.unlink()

    three = set_text(repo, "three")
    pushed, _ = timed_push(cp, repo, "room")
    assert pushed.returncode == 0 and "paas: v4 live at" in pushed.stderr, pushed.stderr
    assert get_text(url) == "three"
    cp.stop()
    cp.start()
    wait_for(lambda: get_text(url) == "three", 60, 0.1, "v4 served after the restart")
    cp.after_passes()
    assert statuses(cp, "room") == ["live", "failed", "failed", "superseded"]
    assert cp.api("GET", "/apps/room").json()["serving"]["revision"] == three


def test_a_push_git_cannot_store_says_the_disk_is_full(disk, tmp_path):
    cp, data = disk
    repo = stdlib_app(tmp_path / "nothing", "one")
    url = cp.create(stdlib_manifest("nothing"))["url"]
    cp.push(repo, "nothing")
    filler = fill_disk(data)
    try:
        set_text(repo, "two")
        for _ in range(2):
            pushed, seconds = timed_push(cp, repo, "nothing")
            lines = remote_lines(pushed.stderr)
            assert pushed.returncode != 0 and seconds < PROMPT, (seconds, pushed.stderr)
            assert len(lines) == 1 and lines[0].endswith(": nothing of this push was stored"), pushed.stderr
            no_space_line(lines, 1, 0)
            assert "Traceback" not in pushed.stderr
        assert statuses(cp, "nothing") == ["live"]
        assert get_text(url) == "one"
    finally:
        filler.unlink()
    pushed, _ = timed_push(cp, repo, "nothing")
    assert pushed.returncode == 0 and "paas: v2 live at" in pushed.stderr, pushed.stderr
    assert get_text(url) == "two"


def test_a_checkout_larger_than_the_room_left_fails_the_push_at_once(disk, tmp_path):
    """Room for a deploy by the setting, not for this revision: LARGE packs into a few KB
    for git, but git-sync's checkout can't write it. The push says what git-sync
    said and how much room there is, within seconds, and the pod keeps serving."""
    cp, data = disk
    repo = stdlib_app(tmp_path / "large", "one")
    url = cp.create(stdlib_manifest("large"))["url"]
    cp.push(repo, "large")
    filler = fill_disk(data, leave=(MIN_FREE_MB + 8) * 1024 * 1024)
    try:
        (repo / "large.txt").write_bytes(LARGE)
        git("add", "large.txt", cwd=repo)
        set_text(repo, "two")
        pushed, seconds = timed_push(cp, repo, "large")
        lines = remote_lines(pushed.stderr)
        assert pushed.returncode != 0 and seconds < PROMPT, (seconds, pushed.stderr)
        assert lines[1].startswith("paas: failed: git-sync could not fetch it: "), lines
        free = re.search(r"the data directory has (\d+) MB free", pushed.stderr)
        assert free and MIN_FREE_MB <= int(free.group(1)) <= MIN_FREE_MB + 8, pushed.stderr
        assert get_text(url) == "one"
        assert statuses(cp, "large") == ["failed", "live"]
    finally:
        filler.unlink()


@pytest.fixture
def signalled(tmp_path: Path, deps_cache: Path) -> Iterator[tuple[ControlPlane, Path]]:
    """`paas up` on a 64 MB data directory telling git-sync of a push by its signal (as
    upstream's is), so a release it can't fetch stays pending, as in the probe."""
    with small_disk(passable(tmp_path / "data"), 64) as data:
        cp = ControlPlane(tmp_path / "data", tmp_path / "cli-config", cache=deps_cache)
        cp.env = cp.env | {"PAAS_MIN_FREE_MB": str(MIN_FREE_MB), "PAAS_SYNC_TRIGGER": "signal"}
        cp.start()
        try:
            yield cp, data
        finally:
            cp.stop()


def test_a_release_cancelled_while_git_sync_could_not_write_never_serves(signalled, tmp_path):
    """The probe: v2 can't be checked out (the disk is too full for it), a config change (v3)
    serves and cancels it. The deploy ref goes back to what serves, so when space comes back
    git-sync fetches that, not v2, and v2 never serves."""
    cp, data = signalled
    repo = stdlib_app(tmp_path / "probe", "one")
    url = cp.create(stdlib_manifest("probe"))["url"]
    cp.push(repo, "probe")
    one = head_of(repo)
    filler = fill_disk(data, leave=(MIN_FREE_MB + 8) * 1024 * 1024)
    try:
        (repo / "large.txt").write_bytes(LARGE)
        git("add", "large.txt", cwd=repo)
        set_text(repo, "two")
        assert cp.push(repo, "probe", options=("nowait",)).returncode == 0
        wait_for(lambda: cp.api("GET", "/apps/probe").json()["sync_error"], 30, 0.2, "git-sync failing on v2")
        changed = cp.api("PUT", "/apps/probe/config", json={"GREETING": "hi"})
        assert changed.status_code == 200, changed.text
        assert statuses(cp, "probe") == ["live", "cancelled", "superseded"]
        deploy_ref = git("ls-remote", f"{cp.url}/git/probe.git", "refs/paas/deploy", cwd=repo,
                         env=auth_env(cp.token)).stdout.split()
        assert deploy_ref[:1] == [one]  # back on what serves, not on cancelled v2
    finally:
        filler.unlink()
    # Space is back: git-sync's next sync succeeds — of what serves.
    wait_for(lambda: cp.api("GET", "/apps/probe").json()["sync_error"] is None, 60, 0.2, "git-sync syncing again")
    cp.after_passes(5)
    assert statuses(cp, "probe") == ["live", "cancelled", "superseded"]
    assert get_text(url) == "one"
    cp.stop()
    cp.start()
    wait_for(lambda: get_text(url) == "one", 60, 0.1, "v3 served after the restart")
    cp.after_passes()
    assert statuses(cp, "probe") == ["live", "cancelled", "superseded"]


def test_a_pods_log_writer_reads_on_while_the_disk_is_full(tmp_path):
    """A line that can't be written is dropped and counted; the process's output is still
    read, so an app printing to a full disk is never blocked on its pipe."""
    with small_disk(tmp_path / "logs", 1) as logs:
        read, write = os.pipe()
        writer = LogWriter(os.fdopen(read, "rb"), logs / "app.log")
        filler = fill_disk(logs)
        os.set_blocking(write, False)
        line, sent, deadline = b"x" * 99 + b"\n", 0, time.monotonic() + 20
        while sent < 2 * 1024 * 1024:  # 32 times what the pipe holds
            try:
                sent += os.write(write, line)
            except BlockingIOError:
                assert time.monotonic() < deadline, f"the log writer stopped reading after {sent} bytes"
                time.sleep(0.001)
        filler.unlink()
        os.set_blocking(write, True)
        os.write(write, b"after\n")
        log = logs / "app.log"
        wait_for(lambda: b" after\n" in log.read_bytes(), 10, what="the line after space came back")
        text = log.read_bytes()
        lost = [int(n) for n in re.findall(rb"paas: (\d+) lines of output lost \(No space left on device\)\n", text)]
        written = text.count(line)
        assert lost and written + sum(lost) == sent // len(line), (written, lost, sent)  # each line kept or counted
        assert text.endswith(b" after\n")
        os.close(write)
        writer.join(10)
