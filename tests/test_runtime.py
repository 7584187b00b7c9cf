"""The runtime supervisor (``paas-runtime``), driven the way a pod drives it.

Each test runs the real supervisor on loopback against a workspace laid out
as git-sync lays it out: worktrees named by (fake) commit hashes and a
relative symlink swapped atomically by renaming a new link over it. The apps
are tiny Flask apps served by real gunicorn from a real venv; every test
shares one dependency cache, so only the first builds flask's venv.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import runtime_harness
from helpers import wait_for
from runtime_harness import Load, Runtime, get, out_of_order, try_get

pytestmark = pytest.mark.slow

APP = """\
import os
import time

from flask import Flask, request

app = Flask(__name__)


@app.get("/")
def index():
    return {text!r}


@app.get("/pgid")
def pgid():
    return str(os.getpgrp())


@app.get("/slow")
def slow():
    open("slow-started", "w").close()
    time.sleep(float(request.args.get("seconds", "2")))
    return {text!r}
"""



def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that still run (zombies awaiting their reaper do not)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        state, _ppid, pgrp = stat[stat.rindex(b")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in (b"Z", b"X"):
            members.append(int(entry))
    return members


def kill_processes_under(root: Path) -> None:
    """Safety net: kill anything still running with its working directory under ``root``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if cwd == str(root) or cwd.startswith(f"{root}/"):
            try:
                os.kill(int(entry), signal.SIGKILL)
            except ProcessLookupError:
                pass


class Workspace(runtime_harness.Workspace):
    def revision(
        self, text: str = "", requirements: str = "flask\n", files: dict[str, str] | None = None
    ) -> str:
        """Write a worktree: a Flask app answering ``text``, unless ``files`` say otherwise."""
        content = {"requirements.txt": requirements, "app.py": APP.format(text=text)}
        return self.write({**content, **(files or {})})


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("paas-cache")


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "workspace")


@pytest.fixture
def start(workspace: Workspace, cache_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    started: list[Runtime] = []

    def start(**env: str) -> Runtime:
        runtime = Runtime(workspace, cache_dir, **env)
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.stop()
        print(runtime.log())  # shown by pytest when the test failed
    kill_processes_under(tmp_path)


def test_answers_503_and_waits_until_the_link_exists(start, workspace):
    runtime = start()
    runtime.wait_for_state(status="waiting", serving=None)
    status, body = wait_for(lambda: try_get(runtime.port), 10, what="an answer on PORT")
    assert status == 503
    assert "no app instance" in body

    workspace.publish(workspace.revision("one"))
    runtime.wait_for_text("one", timeout=120)  # the first venv of the session is built here


def test_first_revision_is_served_through_port(start, workspace):
    rev = workspace.revision("one")
    workspace.publish(rev)
    runtime = start()
    runtime.wait_for_text("one", timeout=120)
    state = runtime.wait_for_state(status="serving")
    assert state["serving"] == rev
    assert state["target"] == rev
    assert state["link"] == rev
    assert state["failed"] is None
    assert state["restarts"] == 0
    assert isinstance(state["updated"], float)


def test_swapping_the_link_serves_the_new_revision(start, workspace):
    workspace.publish(workspace.revision("one"))
    runtime = start()
    runtime.wait_for_text("one", timeout=120)

    rev = workspace.revision("two")
    workspace.publish(rev)
    runtime.wait_for_text("two", timeout=15)
    assert runtime.wait_for_state(status="serving")["serving"] == rev

    # Each instance ran from a snapshot of its revision; the old one's goes with it.
    snapshots = workspace.root / ".paas-revisions"
    wait_for(lambda: [p.name.split(".")[0] for p in snapshots.iterdir()] == [rev], 15, what="one snapshot left")
    assert runtime.stop() == 0
    assert list(snapshots.iterdir()) == []


NODE_APP = """\
const http = require("node:http");
http
  .createServer((req, res) => {{
    res.writeHead(200, {{ "Content-Type": "text/plain" }});
    res.end({text!r});
  }})
  .listen(Number(process.env.PORT), process.env.HOST);
process.on("SIGTERM", () => process.exit(0));
"""
NODE_PACKAGE = '{"name": "app", "version": "1.0.0", "private": true, "scripts": {"start": "node server.js"}}\n'


def revision_for(workspace: Workspace, runtime: str, text: str) -> str:
    """A worktree of ``runtime``'s kind answering ``text`` on /."""
    if runtime == "python":
        return workspace.revision(text)
    if runtime == "node":
        return workspace.write({"package.json": NODE_PACKAGE, "server.js": NODE_APP.format(text=text)})
    return workspace.write({"index.html": text})


def assert_never_older_after_newer(records: list[tuple[float, float, str]], versions: list[str]) -> None:
    """A request begun after one that got version N ended gets N or newer, never older."""
    rank = {v: i for i, v in enumerate(versions)}
    unknown = {body for _, _, body in records} - rank.keys()
    assert not unknown, f"answers that are no version: {unknown}"
    assert out_of_order(records, rank) == 0, "a request got an older version than one that had already ended"


#: How each kind is started, and how the public port reaches it: the app accepts on it
#: itself (gunicorn's sync worker, Node.js) or the supervisor's proxy passes it on (an
#: app without a handoff adapter, or one whose server keeps connections alive).
KINDS = {
    "python": ({"PAAS_RUNTIME": "python"}, "direct"),
    "node": ({"PAAS_RUNTIME": "node"}, "direct"),
    "static": ({"PAAS_RUNTIME": "static"}, "proxied"),
    "gthread": ({"PAAS_RUNTIME": "python", "PAAS_RUN": "gunicorn -k gthread --threads 4 app:app"}, "proxied"),
}


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.node) if k == "node" else k for k in KINDS])
def test_no_request_fails_across_five_swaps_under_load(start, workspace, kind):
    env, traffic = KINDS[kind]
    code = {"gthread": "python"}.get(kind, kind)
    workspace.publish(revision_for(workspace, code, "v0"))
    runtime = start(**env)
    runtime.wait_for_text("v0", timeout=120)
    assert runtime.state()["traffic"] == traffic
    versions = ["v0", "v1", "v2", "v3", "v4", "v5"]

    with Load(runtime.port, clients=3) as load:  # 3 clients x 25 requests/s
        for version in versions[1:]:
            workspace.publish(revision_for(workspace, code, version))
            runtime.wait_for_text(version, timeout=20)
            wait_for(lambda v=version: load.bodies().count(v) >= 10, 10, what=f"traffic on {version}")

    assert load.failures == []
    assert set(load.bodies()) == set(versions)
    assert_never_older_after_newer(load.records, versions)
    span = load.records[-1][1] - load.records[0][0]
    assert len(load.records) / span >= 50, f"{len(load.records)} requests in {span:.1f} s"
    assert runtime.state()["traffic"] == traffic


def test_the_old_instance_finishes_requests_in_flight(start, workspace):
    old = workspace.revision("old")
    workspace.publish(old)
    # No grace of its own: only the supervisor's drain can save the slow request.
    runtime = start(PAAS_RUN="gunicorn --graceful-timeout 0 app:app")
    runtime.wait_for_text("old", timeout=120)
    assert runtime.state()["traffic"] == "direct"  # the supervisor never sees the request

    answers: list[tuple[int, str]] = []
    slow = threading.Thread(target=lambda: answers.append(get(runtime.port, "/slow?seconds=2")))
    slow.start()
    try:
        # The app runs in the supervisor's snapshot of its revision, not in git-sync's worktree.
        wait_for(
            lambda: list(workspace.root.glob(f".paas-revisions/{old}.*/slow-started")),
            10,
            what="the slow request to reach the app",
        )
        new = workspace.revision("new")
        workspace.publish(new)
        # Watched on the status endpoint: a request now would queue behind the slow one.
        runtime.wait_for_state(serving=new, timeout=15)
        assert get(runtime.port) == (200, "new")
    finally:
        slow.join(15)
    assert answers == [(200, "old")]


def test_revision_failing_on_import_leaves_the_old_one_serving(start, workspace):
    good = workspace.revision("good")
    workspace.publish(good)
    runtime = start()
    runtime.wait_for_text("good", timeout=120)

    bad = workspace.revision(files={"app.py": "raise RuntimeError('this revision cannot start')\n"})
    workspace.publish(bad)
    state = runtime.wait_for_state(status="failed")

    assert state["serving"] == good
    assert state["target"] == bad
    assert state["link"] == bad  # so the control plane doesn't take "serving good" for a new release of good
    assert state["failed"]["revision"] == bad
    assert "RuntimeError: this revision cannot start" in state["failed"]["reason"]
    assert get(runtime.port) == (200, "good")
    assert "Traceback" not in "".join(
        line for line in runtime.log().splitlines() if line.startswith("paas-runtime:")
    )

    fixed = workspace.revision("fixed")
    workspace.publish(fixed)
    runtime.wait_for_text("fixed", timeout=15)
    assert runtime.wait_for_state(status="serving")["failed"] is None


def test_venv_is_reused_for_the_same_requirements_and_rebuilt_for_new_ones(start, workspace, cache_dir):
    venvs = cache_dir / "venvs"

    def listing() -> dict[str, int]:
        return {p.name: p.lstat().st_ino for p in venvs.iterdir()}

    workspace.publish(workspace.revision("one"))
    runtime = start()
    runtime.wait_for_text("one", timeout=120)
    before = listing()

    workspace.publish(workspace.revision("two"))
    runtime.wait_for_text("two", timeout=15)
    assert listing() == before

    workspace.publish(workspace.revision("three", requirements="flask\nitsdangerous\n"))
    runtime.wait_for_text("three", timeout=120)
    after = listing()
    added = {name for name in after if name not in before and not name.startswith(".")}
    assert len(added) == 1
    assert all(after[name] == inode for name, inode in before.items())


def test_procfile_web_line_is_honoured(start, workspace):
    workspace.publish(
        workspace.revision(
            "from app.py",
            files={
                "Procfile": "# process types\nworker: python worker.py\nweb: gunicorn other:app\n",
                "other.py": APP.format(text="from the Procfile"),
            },
        )
    )
    runtime = start()
    runtime.wait_for_text("from the Procfile", timeout=120)


def test_paas_run_wins_over_the_procfile(start, workspace):
    workspace.publish(
        workspace.revision(
            "from app.py",
            files={
                "Procfile": "web: gunicorn app:app\n",
                "run.py": APP.format(text="from PAAS_RUN"),
            },
        )
    )
    runtime = start(PAAS_RUN="gunicorn --bind 127.0.0.1:$PORT run:app")
    runtime.wait_for_text("from PAAS_RUN", timeout=120)


def test_static_runtime_serves_files_but_not_dot_paths(start, workspace):
    workspace.publish(workspace.write({"index.html": "<h1>static</h1>", ".env": "SECRET=1"}))
    runtime = start()
    runtime.wait_for_text("<h1>static</h1>", timeout=30)
    assert get(runtime.port, "/.env")[0] == 404
    assert get(runtime.port, "/%2eenv")[0] == 404


def test_a_crashed_instance_is_restarted(start, workspace):
    workspace.publish(workspace.revision("one"))
    runtime = start()
    runtime.wait_for_text("one", timeout=120)
    status, pgid = get(runtime.port, "/pgid")
    assert status == 200

    os.killpg(int(pgid), signal.SIGKILL)
    state = runtime.wait_for_state(restarts=1)
    runtime.wait_for_text("one", timeout=15)
    assert get(runtime.port, "/pgid")[1] != pgid
    state = runtime.wait_for_state(status="serving")
    assert state["serving"] == state["target"]
    assert [e["event"] for e in state["events"]] == ["deployed", "crashed", "restarted"]
    assert "exited with code" in state["events"][1]["message"]
    assert "restarting in 1 s" in runtime.log()


def test_sigterm_stops_every_process_and_exits_0(start, workspace):
    workspace.publish(workspace.revision("one"))
    runtime = start()
    runtime.wait_for_text("one", timeout=120)
    status, pgid = get(runtime.port, "/pgid")
    assert status == 200
    assert live_members(int(pgid))  # gunicorn master, worker and the shell

    began = time.monotonic()
    runtime.proc.send_signal(signal.SIGTERM)
    assert runtime.proc.wait(10) == 0
    assert time.monotonic() - began < 8
    assert live_members(int(pgid)) == []


def test_missing_port_is_one_clear_error():
    env = {k: v for k, v in os.environ.items() if k != "PORT"}
    result = subprocess.run(
        [sys.executable, "-m", "paas_runtime"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "PORT: required" in result.stderr
    assert "Traceback" not in result.stderr
