"""Apps kept out of the platform (the local backend, as a probe on the same machine would try
it): run as root, `paas up` gives each app a uid of its own, which reads none of the data
directory's secrets nor another app's files; the data directory is private whoever runs it;
gunicorn's control socket is off; and nothing an app starts outlives its pod, `setsid` and a
cleared environment included."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from helpers import ControlPlane, get_text, git, passable, processes_under, wait_for

pytestmark = pytest.mark.slow
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="apps get uids of their own only when paas up runs as root")

# An app that tries every path in $TARGETS and says what it could do, as JSON: `read` (the
# file's first bytes came back), `listed` (a directory), `connected` (a socket), or the error.
SNOOP = '''import json, os, socket
from http.server import BaseHTTPRequestHandler, HTTPServer


def attempt(path):
    try:
        if os.path.isdir(path):
            os.listdir(path)
            return "listed"
        if path.endswith(".sock"):
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            return "connected"
        with open(path, "rb") as f:
            f.read(16)
        return "read"
    except OSError as e:
        return type(e).__name__


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        found = {path: attempt(path) for path in json.loads(os.environ["TARGETS"])}
        own = os.path.join(os.getcwd(), "server.py")
        body = json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                           "found": found, "own": attempt(own)}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''


def app_repo(dest: Path, server: str) -> Path:
    dest.mkdir(parents=True)
    (dest / "requirements.txt").write_text("")
    (dest / "server.py").write_text(server)
    git("init", "-q", "-b", "main", cwd=dest)
    git("add", ".", cwd=dest)
    git("commit", "-q", "-m", "first", cwd=dest)
    return dest


def manifest(name: str, env: dict[str, str] | None = None) -> str:
    return json.dumps({"name": name, "runtime": "python", "run": "python server.py", "env": env or {}})


@pytest.fixture
def cp(tmp_path):
    """`paas up` as a user runs it: its admin token made on first start, in the data directory."""
    cp = ControlPlane(tmp_path / "data", tmp_path / "cli-config")
    del cp.env["PAAS_TOKEN"]
    cp.start()
    cp.token = (cp.data_dir / "token").read_text().strip()
    yield cp
    cp.stop()
    wait_for(lambda: not processes_under(cp.data_dir / "pods"), 15, what="no pod process left")


@as_root
def test_each_app_runs_as_a_user_of_its_own_that_reads_none_of_the_platform(cp, tmp_path):
    data = cp.data_dir
    victim = cp.create(manifest("victim", {"TARGETS": "[]"}))
    cp.push(app_repo(tmp_path / "victim", SNOOP), "victim")
    targets = [
        data / "token", data / "ca" / "ca.key", data / "paas.sqlite3", data / "paas.sqlite3-wal",
        data / "instance", data / "repos" / "victim.git" / "config", data / "router" / "routes.json", data,
        data / "pods" / "victim" / "workspace" / "git" / "current" / "server.py",
        data / "pods" / "victim" / "secrets", data / "pods" / "victim" / "logs" / "runtime.log",
    ]
    for target in targets:
        assert os.path.lexists(target), target  # each is there to be read: a refusal is the point
    # And what this version adds: the pod host's socket, the uids, the victim's home.
    targets += [data / "run" / "pods.sock", data / "pods" / "uids.json", data / "pods" / "victim" / "home"]
    targets = [t for t in targets if os.path.lexists(t)]
    snoop = cp.create(manifest("snoop", {"TARGETS": json.dumps([str(t) for t in targets])}))
    cp.push(app_repo(tmp_path / "snoop", SNOOP), "snoop")

    seen = json.loads(wait_for(lambda: get_text(snoop["url"]), 30, what="the snoop app"))
    assert seen["found"] == {str(t): "PermissionError" for t in targets}
    assert seen["own"] == "read"  # its own code it reads
    other = json.loads(wait_for(lambda: get_text(victim["url"]), 30, what="victim"))
    assert seen["uid"] in cp.uids and other["uid"] in cp.uids and seen["uid"] != other["uid"]
    assert seen["gid"] == seen["uid"] and seen["groups"] == []  # root's groups stay behind
    # Every process of each pod runs as its app's uid, none as root.
    for name, uid in (("snoop", seen["uid"]), ("victim", other["uid"])):
        pids = processes_under(data / "pods" / name)
        assert pids and {os.stat(f"/proc/{pid}").st_uid for pid in pids} == {uid}, name


def test_the_data_directory_is_private(cp, tmp_path):
    app = cp.create(manifest("private", {"TARGETS": "[]"}))
    cp.push(app_repo(tmp_path / "private", SNOOP), "private")
    wait_for(lambda: get_text(app["url"]), 30, what="the app")
    cp.api("PUT", "/apps/private/config", json={"SECRET_VALUE": "s3cret"})
    data = cp.data_dir
    pods = data / "pods"
    apps_pass = os.geteuid() == 0  # apps of their own uids pass through to their pods
    checked = 0
    for path in [data, *data.rglob("*")]:
        inside = path.relative_to(pods).parts if pods in path.parents else ()
        if path.is_symlink() or len(inside) >= 2 and inside[1] != "logs":
            continue  # the suite's shared caches; what each pod's app owns (workspace, home…)
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            wanted = 0o711 if apps_pass and (path in (data, pods) or len(inside) == 1) else 0o700
            assert mode == wanted, f"{path} is {oct(mode)}, not {oct(wanted)}"
        else:
            assert mode & 0o077 == 0, f"{path} is {oct(mode)}"  # the owner's alone (hooks are 0700)
        checked += 1
    assert checked > 20  # the store, its WAL, the repo's files, the CA, the logs…
    # And another user reads none of it (the store and its WAL hold config values).
    for name in ("paas.sqlite3", "paas.sqlite3-wal", "token", "ca/ca.key"):
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", str(data / name)],
                              capture_output=True, text=True)
        assert done.returncode != 0 and "Permission denied" in done.stderr, name


def test_gunicorn_serves_no_control_socket(cp):
    """gunicorn >= 25.1 listens on a control socket (`gunicornc` can add workers: two
    reconcilers); the API's master and worker hold no Unix socket but the pod host's client."""
    masters = [p for p in _children(cp.proc.pid) if _cmdline(p).endswith("paas.server.serve")]
    assert masters
    for pid in masters + [c for m in masters for c in _children(m)]:
        paths = _unix_socket_paths(pid)
        assert not [p for p in paths if "gunicorn" in p], paths
    ctl = Path(cp.env.get("HOME", "/root")) / ".gunicorn" / "gunicorn.ctl"
    holders = [pid for pid in masters if str(ctl) in _unix_socket_paths(pid)]
    assert not holders


def test_nothing_an_app_starts_outlives_its_pod(cp, tmp_path):
    """A child that clears its environment (the pod's marker) and calls setsid (leaves the
    process group) is stopped with the pod: on `paas restart --hard` and on `paas delete`."""
    mark = f"{uuid.uuid4().int % 10**6}.{os.getpid()}"
    escaper = SNOOP.replace(
        "HTTPServer((",
        "import subprocess\n"
        f"subprocess.Popen(['/usr/bin/setsid', '/usr/bin/env', '-i', '/bin/sleep', '{mark}'])\n"
        "HTTPServer((",
    )
    app = cp.create(manifest("escaper", {"TARGETS": "[]"}))
    cp.push(app_repo(tmp_path / "escaper", escaper), "escaper")
    wait_for(lambda: get_text(app["url"]), 30, what="the app")
    first = wait_for(lambda: _running(mark), 10, what="the escaped child")
    assert _environ(first[0]) == []  # it really has no marker: only re-parenting finds it

    assert cp.api("POST", "/apps/escaper/restart", json={"hard": True}).status_code == 200
    wait_for(lambda: not set(first) & set(_running(mark)), 10, what="the old pod's escaped child gone")
    second = wait_for(lambda: _running(mark), 10, what="the new pod's escaped child")

    assert cp.api("DELETE", "/apps/escaper").status_code == 200
    assert not _running(mark), f"{second} outlived paas delete"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_paas_up_as_an_ordinary_user_says_apps_share_its_rights(tmp_path):
    """Run by uid 65534 the apps can't have users of their own: `paas up` says so in its first
    lines, and still keeps the data directory private."""
    home, data = passable(tmp_path / "home"), passable(tmp_path / "data")
    for path in (home, data):
        os.chown(path, 65534, 65534)
    port = _free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "PAAS_DATA": str(data),
           "PAAS_CONFIG": str(home / "cfg"), "PAAS_ROUTER_PORT": "0", "PAAS_ROUTER_TLS_PORT": "0",
           **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    up = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-m", "paas.cli", "up", "--port", str(port)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=home)
    try:
        lines: list[str] = []
        assert up.stdout is not None
        for line in up.stdout:
            lines.append(line)
            if line.startswith("token:") or len(lines) > 40:
                break
        said = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines if ":" in line}
        assert said.get("users", "").startswith("apps run as you (") and "share your rights" in said["users"], lines
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE((data / "token").stat().st_mode) == 0o600
    finally:
        up.terminate()
        up.wait(30)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def _unix_socket_paths(pid: int) -> list[str]:
    """The paths of the Unix sockets ``pid`` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    paths = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in inodes:
            paths.append(fields[7])
    return paths


def _running(mark: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if mark.encode() in argv and state != "Z":
                found.append(int(entry.name))
    return found


def _environ(pid: int) -> list[bytes]:
    return [v for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if v]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
