"""git-sync's speed and footprint, against a small repository served over HTTP with basic auth.

Prints, for a changed small repository (median of N syncs): git-sync's own sync duration
(from its metrics), the same work done by hand in the same run (`git fetch` + `git worktree
add`) and their ratio (target <= 1.2); the no-op poll duration; `POST /sync` -> link moved
latency; and the idle RSS after a minute (target <= 20 MB), of the local process and, with
--docker, of the image too.

    python bench/gitsync.py [--syncs 20] [--idle 60] [--docker]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from gitserver import GIT_ENV, GitServer, Upstream, git  # noqa: E402
from helpers import auth_env, free_port, wait_for  # noqa: E402

USERNAME, PASSWORD = "paas", "bench-token"
IMAGE = "paas-git-sync:0.1.0"


class GitSync:
    """A git-sync process (or container) polling once an hour: every sync is asked for."""

    def __init__(self, port: int, link: Path, stop: Callable[[], None],
                 rss: Callable[[], int]) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.link = link
        self.stop = stop
        self.rss_kb = rss
        self.session = requests.Session()
        wait_for(lambda: self.session.get(self.base + "/", timeout=1).status_code == 200, 60,
                 what="git-sync's first sync")

    def metric(self, sample: str) -> float:
        """The sample's value; 0 before its series was first counted (as upstream's)."""
        text = self.session.get(self.base + "/metrics", timeout=5).text
        found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    def sync(self) -> dict:
        return self.session.post(self.base + "/sync", timeout=30).json()

    def linked(self) -> str:
        try:
            return Path(os.readlink(self.link)).name
        except OSError:
            return ""


def start_local(url: str, root: Path) -> GitSync:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITSYNC_")}
    env |= GIT_ENV | {"GITSYNC_PASSWORD": PASSWORD}
    proc = subprocess.Popen(
        [sys.executable, "-m", "git_sync", f"--repo={url}", f"--username={USERNAME}",
         f"--root={root}", "--link=current", "--period=1h", f"--http-bind=127.0.0.1:{port}",
         "--http-metrics", "--git-gc=auto"],  # as paas pods run it (upstream's default gc: always)
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop() -> None:
        proc.terminate()
        proc.wait(10)

    return GitSync(port, root / "current", stop,
                   lambda: _rss_kb(Path(f"/proc/{proc.pid}/status").read_text()))


def start_container(port_on_host: int, root: Path) -> GitSync:
    name = f"paas-bench-git-sync-{uuid.uuid4().hex[:8]}"
    port = free_port()
    root.mkdir(mode=0o777)
    root.chmod(0o777)
    subprocess.run(
        ["docker", "run", "--detach", "--name", name,
         "--add-host", "host.docker.internal:host-gateway", "-p", f"127.0.0.1:{port}:8079",
         "-v", f"{root}:/git", "-e", f"GITSYNC_PASSWORD={PASSWORD}", IMAGE,
         f"--repo=http://host.docker.internal:{port_on_host}/app.git",
         f"--username={USERNAME}", "--link=current", "--period=1h", "--http-bind=:8079",
         "--http-metrics", "--git-gc=auto"],
        check=True, capture_output=True)

    def stop() -> None:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True)

    def rss() -> int:
        status = subprocess.run(["docker", "exec", name, "cat", "/proc/1/status"],
                                capture_output=True, text=True, check=True).stdout
        return _rss_kb(status)

    try:
        return GitSync(port, root / "current", stop, rss)
    except BaseException:
        stop()
        raise


def _rss_kb(status: str) -> int:
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))


def by_hand(url: str, workdir: Path) -> Callable[[], float]:
    """The same fetch and checkout git-sync does, timed: `git fetch` + `git worktree add`."""
    workdir.mkdir()
    env = {**os.environ, **GIT_ENV, **auth_env(PASSWORD), "GIT_TERMINAL_PROMPT": "0"}
    env["GIT_CONFIG_VALUE_0"] = env["GIT_CONFIG_VALUE_0"].replace("username=paas",
                                                                  f"username={USERNAME}")
    run = lambda *args: subprocess.run(["git", *args], cwd=workdir, env=env,  # noqa: E731
                                       check=True, capture_output=True, text=True).stdout
    run("init", "--quiet", "--initial-branch=bench")
    run("remote", "add", "origin", url)
    count = 0

    def once() -> float:
        nonlocal count
        count += 1
        start = time.perf_counter()
        run("fetch", "--no-tags", "--no-progress", "--no-auto-gc", "--depth", "1", "origin",
            "HEAD")
        run("worktree", "add", "--detach", f"wt{count}", "FETCH_HEAD")
        return time.perf_counter() - start

    return once


def link_latency(gitsync: GitSync, expected: str) -> tuple[float, float]:
    """(POST /sync -> link points at `expected`, POST round trip), both in seconds."""
    moved: list[float] = []
    start = time.perf_counter()

    def watch() -> None:
        # Every 0.5 ms: a busy loop would hold the GIL that the git server (in this
        # process) needs, and slow down what is measured.
        while time.perf_counter() - start < 10:
            if gitsync.linked() == expected:
                moved.append(time.perf_counter())
                return
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    answer = gitsync.sync()
    answered = time.perf_counter()
    watcher.join()
    assert answer["hash"] == expected and moved, answer
    return moved[0] - start, answered - start


def measure(label: str, gitsync: GitSync, upstream: Upstream, manual: Callable[[], float] | None,
            syncs: int, idle: float) -> None:
    changed, noop, moved, round_trip, hand = [], [], [], [], []
    for i in range(syncs):
        commit = upstream.commit(f"change {i}")
        if manual is not None and i % 2:  # alternate, so neither side gains from going first
            hand.append(manual())
        before = gitsync.metric('git_sync_duration_seconds_sum{status="success"}')
        link, total = link_latency(gitsync, commit)
        changed.append(gitsync.metric('git_sync_duration_seconds_sum{status="success"}') - before)
        moved.append(link)
        round_trip.append(total)
        before = gitsync.metric('git_sync_duration_seconds_sum{status="noop"}')
        assert gitsync.sync()["changed"] is False
        noop.append(gitsync.metric('git_sync_duration_seconds_sum{status="noop"}') - before)
        if manual is not None and not i % 2:
            hand.append(manual())
    ms = lambda values: f"{statistics.median(values) * 1000:6.1f} ms"  # noqa: E731
    print(f"[{label}] sync of a changed small repo (median of {syncs}): {ms(changed)}")
    if hand:
        ratio = statistics.median(changed) / statistics.median(hand)
        print(f"[{label}] git fetch + git worktree add by hand (median): {ms(hand)}"
              f"  -> ratio {ratio:.2f}x (target <= 1.2x)")
    print(f"[{label}] no-op poll (median):                         {ms(noop)}")
    print(f"[{label}] POST /sync -> link moved (median):           {ms(moved)}"
          f"  (POST answered: {ms(round_trip)})")
    time.sleep(idle)  # the measurement itself: a minute of doing nothing
    print(f"[{label}] idle RSS after {idle:g} s:                    "
          f"{gitsync.rss_kb() / 1024:6.1f} MB (target <= 20 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syncs", type=int, default=20)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds before reading RSS")
    parser.add_argument("--docker", action="store_true", help=f"also measure the {IMAGE} image")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="paas-bench-gitsync-") as tmp:
        base = Path(tmp)
        (base / "served").mkdir()
        host = "0.0.0.0" if args.docker else "127.0.0.1"
        with GitServer(base / "served", USERNAME, PASSWORD, host=host) as server:
            upstream = Upstream(server, "app", base / "work")
            for name in ("app.py", "README.md", "requirements.txt"):
                upstream.commit(f"# {name}\n" * 20, path=name)
            url = server.url("app.git").replace("0.0.0.0", "127.0.0.1")
            local = start_local(url, base / "root")
            try:
                measure("local", local, upstream, by_hand(url, base / "by-hand"), args.syncs,
                        args.idle)
            finally:
                local.stop()
            if args.docker:
                container = start_container(server.port, base / "container-root")
                try:
                    measure("image", container, upstream, None, args.syncs, args.idle)
                finally:
                    container.stop()
                git("gc", "--quiet", cwd=upstream.bare)


if __name__ == "__main__":
    main()
