"""Shared test helpers: polling with a deadline, free ports, real git, a real control plane."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import requests

from paas_https.certs import fingerprint

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # a not-yet-ready server raises; keep polling
            last_error = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(
    *args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True, timeout: float | None = None
) -> subprocess.CompletedProcess:
    full_env = os.environ | {
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "GIT_TERMINAL_PROMPT": "0",
    } | (env or {})
    result = subprocess.run(["git", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result


def auth_env(token: str) -> dict[str, str]:
    """A credential helper set through the environment: the token never lands in argv or a URL."""
    helper = '!f() { test "$1" = get && echo username=paas && echo "password=$PAAS_TEST_TOKEN"; }; f'
    return {
        "PAAS_TEST_TOKEN": token,
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "credential.helper",
        "GIT_CONFIG_VALUE_0": helper,
    }


def sample_repo(name: str, dest: Path) -> Path:
    """A fresh git repo holding a copy of ``samples/<name>``, committed on main."""
    shutil.copytree(SAMPLES / name, dest)
    git("init", "-q", "-b", "main", cwd=dest)
    git("add", ".", cwd=dest)
    git("commit", "-q", "-m", "first", cwd=dest)
    return dest


def commit_change(repo: Path, path: str, old: str, new: str, message: str) -> None:
    file = repo / path
    file.write_text(file.read_text().replace(old, new))
    git("commit", "-q", "-am", message, cwd=repo)


def get_text(url: str, timeout: float = 2.0) -> str | None:
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException:
        return None
    return response.text if response.status_code == 200 else None


class ControlPlane:
    """`paas up` as a user runs it: a real gunicorn serving on a free loopback port."""

    def __init__(
        self,
        data_dir: Path,
        config: Path,
        token: str = "test-token-123",
        backend: str = "local",
        cache: Path | None = None,
    ) -> None:
        """``cache``: a dependency cache shared with other control planes of the run (the local
        backend's venvs and node_modules), so each doesn't pay for the same pip install."""
        self.data_dir, self.token, self.port, self.backend = passable(data_dir), token, free_port(), backend
        self.uids = range(300000 + self.port * 100, 300000 + self.port * 100 + 100)
        self.cache = cache
        self.url = f"http://127.0.0.1:{self.port}"
        # Its router on free ports too (the suite turns the router off for other `paas up`s).
        self.router_port, self.router_tls_port = free_port(), free_port()
        self.env = os.environ | {"PAAS_TOKEN": token, "PAAS_CONFIG": str(config), "PAAS_DATA": str(self.data_dir),
                                 "PAAS_ROUTER_PORT": str(self.router_port),
                                 "PAAS_ROUTER_TLS_PORT": str(self.router_tls_port),
                                 # Run as root, its apps get uids of their own: a range per
                                 # control plane, so two of one run never share a uid.
                                 "PAAS_APP_UIDS": f"{self.uids.start}-{self.uids.stop - 1}"}
        self.proc: subprocess.Popen | None = None
        self.log = data_dir.parent / f"paas-up-{self.port}.log"

    def start(self) -> ControlPlane:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.cache is not None and not (self.data_dir / "cache").exists():
            (self.data_dir / "cache").symlink_to(self.cache)
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "paas.cli", "up", "--port", str(self.port), "--backend", self.backend],
            env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(lambda: requests.get(f"{self.url}/api/v1/healthz", timeout=1).ok, 30, what="paas up")
        return self

    def stop(self, sig: int = signal.SIGINT, group: bool = False) -> int:
        """Stop `paas up` with ``sig`` (to its whole process group with ``group``)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} | kwargs.pop("headers", {})
        return requests.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=30, **kwargs)

    def create(self, manifest: str) -> dict:
        response = self.api("POST", "/apps", data=manifest, headers={"Content-Type": "application/yaml"})
        assert response.status_code == 201, response.text
        return response.json()

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """The real `paas` command, configured by `paas up` as a user's would be."""
        return subprocess.run([sys.executable, "-m", "paas.cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=60)

    def push(
        self, repo: Path, app: str, ref: str = "main", check: bool = True, options: tuple[str, ...] = (),
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess:
        """`git push` of ``ref``; ``options`` are push options (``-o``)."""
        flags = [arg for option in options for arg in ("-o", option)]
        return git("push", *flags, f"{self.url}/git/{app}.git", ref, cwd=repo, env=auth_env(self.token), check=check,
                   timeout=timeout)

    def passes(self) -> int:
        """Reconciler passes so far (a test waits for passes, not for time)."""
        return requests.get(f"{self.url}/api/v1/healthz", timeout=5).json()["reconciled"]

    def after_passes(self, count: int = 3) -> None:
        """Return once ``count`` more reconciler passes have run."""
        target = self.passes() + count
        wait_for(lambda: self.passes() >= target, 30, 0.05, f"{count} reconciler passes")


def passable(data_dir: Path) -> Path:
    """Where a control plane of the suite keeps its data: run as root, the local backend runs
    apps as other uids, which must pass through every directory above their pods — and
    pytest's temporary directories are private (every pytest session makes them 0700 again).
    So the data lives under a directory of the run's own (``APPS_ROOT``, 0711: nothing in it
    can be listed), and ``data_dir`` becomes a link to it (what it held moves along)."""
    if os.geteuid() != 0 or data_dir.is_symlink():
        return data_dir.resolve()
    APPS_ROOT.mkdir(mode=0o711, parents=True, exist_ok=True)
    real = Path(tempfile.mkdtemp(prefix=f"{data_dir.parent.name}-", dir=APPS_ROOT))
    if data_dir.exists():
        real.rmdir()
        shutil.move(data_dir, real)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    data_dir.symlink_to(real, target_is_directory=True)
    return real


APPS_ROOT = Path(tempfile.gettempdir()) / f"paas-tests-{os.getpid()}"


@contextmanager
def docker_control_plane_in(base: Path, **env: str) -> Iterator[ControlPlane]:
    """A real `paas up --backend docker` (``env``: more of its environment); afterwards its
    apps are deleted (by a control plane started again if the test left it stopped) and
    every object it made is gone."""
    import docker

    cp = ControlPlane(base / "data", base / "cli-config", backend="docker")
    cp.env = cp.env | env
    cp.start()
    try:
        yield cp
    finally:
        if cp.proc is not None and cp.proc.poll() is not None:
            cp.start()
        for app in cp.api("GET", "/apps").json()["apps"]:
            cp.api("DELETE", f"/apps/{app['name']}")
        cp.stop()
        client = docker.from_env()
        owner = {"label": f"paas.instance={(cp.data_dir / 'instance').read_text().strip()}"}
        for c in client.containers.list(all=True, filters=owner):
            c.remove(force=True)
        for volume in client.volumes.list(filters=owner):
            volume.remove(force=True)  # the shared dependency cache outlives apps, not the test


@contextmanager
def small_disk(path: Path, size_mb: int) -> Iterator[Path]:
    """A real filesystem of ``size_mb`` (tmpfs) mounted at ``path``, unmounted afterwards (and
    lazily if something still holds a file on it); needs root, which the suite runs as."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)


def fill_disk(directory: Path, leave: int = 0) -> Path:
    """Fill ``directory``'s filesystem with one file until a write fails for lack of room,
    then give back ``leave`` bytes; the file (delete it to free the space)."""
    filler = directory / "filler"
    chunk = b"\0" * (1024 * 1024)
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
            while True:  # the last, partial megabyte
                try:
                    f.write(b"\0" * 4096)
                except OSError:
                    break
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def processes_under(directory: Path) -> list[int]:
    """Pids of live processes whose working directory is inside ``directory``."""
    found = []
    target = str(directory.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd == target or cwd.startswith(target + "/")):
            found.append(int(entry.name))
    return found


class Load:
    """A steady client on loopback (a new connection per request), bounded in time and count."""

    def __init__(self, url: str, rate: float = 60.0, limit: float = 120.0, host: str | None = None) -> None:
        """``host``: the Host header to send (the router routes by it)."""
        self.url, self.interval, self.limit = url, 1.0 / rate, limit
        self.headers = {"Connection": "close"} | ({"Host": host} if host else {})
        self.failures: list[str] = []
        self.failed_at: list[float] = []  # when each failed request was sent (time.monotonic())
        self.bodies: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def served(self) -> int:
        return len(self.bodies)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                response = requests.get(self.url, timeout=5, headers=self.headers)
                if response.status_code == 200:
                    self.bodies.append(response.text)
                else:
                    self._failed(started, f"HTTP {response.status_code}")
            except requests.RequestException as e:
                self._failed(started, type(e).__name__)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _failed(self, started: float, what: str) -> None:
        self.failed_at.append(started)
        self.failures.append(what)


# A Python app with no dependencies (its venv builds in a second, once per run): it answers
# every GET with TEXT. Tests change TEXT, or make the app raise at start, one commit each.
STDLIB_SERVER = '''import os
from http.server import BaseHTTPRequestHandler, HTTPServer

TEXT = "one"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = TEXT.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Handler).serve_forever()
'''
STDLIB_MANIFEST = "name: {name}\nruntime: python\nrun: python server.py\nhealthcheck: {{timeout: {timeout}}}\n"


# The stdlib app saying what it runs with, as JSON: its TEXT, $GREETING, GREETING in its
# config dir's config.json (read at start, on SIGHUP and on a POST: the config sidecar's
# signal and webhook), its pid, the count of each and where the `data` volume is.
RELOADING_SERVER = '''import json, os, signal
from http.server import BaseHTTPRequestHandler, HTTPServer

TEXT = "one"
state = {"file": "-", "hups": 0, "hooks": 0}


def load(*_):
    try:
        with open(os.path.join(os.environ["PAAS_CONFIG_DIR"], "config.json")) as f:
            state["file"] = json.load(f).get("GREETING", "-")
    except OSError:
        pass


def hup(*_):
    state["hups"] += 1
    load()


signal.signal(signal.SIGHUP, hup)
load()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"text": TEXT, "env": os.environ.get("GREETING", "-"), "file": state["file"],
                           "pid": os.getpid(), "hups": state["hups"], "hooks": state["hooks"],
                           "volume": os.environ.get("PAAS_VOLUME_DATA", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        state["hooks"] += 1
        load()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Handler).serve_forever()
'''


def reloading_app(dest: Path) -> Path:
    """A git repo holding RELOADING_SERVER, committed on main as "one"."""
    repo = stdlib_app(dest, "one")
    (repo / "server.py").write_text(RELOADING_SERVER)
    git("commit", "-q", "-am", "one", cwd=repo)
    return repo


def seen(url: str) -> dict:
    """What RELOADING_SERVER at ``url`` says it runs with ({} when nothing answers)."""
    import json

    return json.loads(get_text(url) or "{}")


def stdlib_app(dest: Path, text: str = "one") -> Path:
    """A git repo holding the stdlib app answering ``text``, committed on main as ``text``."""
    dest.mkdir(parents=True)
    (dest / "requirements.txt").write_text("")
    (dest / "server.py").write_text(STDLIB_SERVER.replace('TEXT = "one"', f"TEXT = {text!r}"))
    git("init", "-q", "-b", "main", cwd=dest)
    git("add", ".", cwd=dest)
    git("commit", "-q", "-m", text, cwd=dest)
    return dest


def stdlib_manifest(name: str, timeout: int = 20) -> str:
    return STDLIB_MANIFEST.format(name=name, timeout=timeout)


def set_text(repo: Path, text: str) -> str:
    """Commit a working app answering ``text`` (the commit's message); its hash."""
    (repo / "server.py").write_text(STDLIB_SERVER.replace('TEXT = "one"', f"TEXT = {text!r}"))
    git("commit", "-q", "-am", text, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).stdout.strip()


def break_app(repo: Path, message: str = "break it") -> str:
    """Commit an app that raises ``RuntimeError: broken on purpose`` at start; its hash."""
    server = repo / "server.py"
    server.write_text(server.read_text().replace("\nclass Handler", '\nraise RuntimeError("broken on purpose")\n\n\nclass Handler', 1))
    git("commit", "-q", "-am", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).stdout.strip()


def head_of(repo: Path) -> str:
    return git("rev-parse", "HEAD", cwd=repo).stdout.strip()


def peer_fingerprint(sock: ssl.SSLSocket) -> str:
    """The SHA-256 fingerprint of the certificate the server showed on ``sock``."""
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return fingerprint(ssl.DER_cert_to_PEM_cert(der).encode())


def tls_records(message: bytes, *sizes: int) -> bytes:
    """A TLS handshake ``message`` as records of these fragment sizes (the last takes the rest)."""
    out, at = b"", 0
    for size in (*sizes, len(message)):
        fragment = message[at : at + size]
        if fragment:
            out += b"\x16\x03\x01" + len(fragment).to_bytes(2, "big") + fragment
        at += len(fragment)
    return out
