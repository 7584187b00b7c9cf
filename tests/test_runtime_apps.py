"""The runtimes the supervisor knows: node and static apps, and telling which one a revision is.

Same setting as tests/test_runtime.py (whose workspace, runtime and client helpers
these tests use): the real supervisor on loopback, a git-sync-like workspace.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import test_runtime
from test_runtime import NODE_APP, NODE_PACKAGE, get

from helpers import wait_for
from paas_runtime.handoff import NODE_ADAPTER

# The fixtures of tests/test_runtime.py, used here as they are.
cache_dir = test_runtime.cache_dir
workspace = test_runtime.workspace
start = test_runtime.start

pytestmark = [pytest.mark.slow, pytest.mark.node]

SERVER_MJS = """\
import http from "node:http";
import greet from "greet";

http
  .createServer((req, res) => res.end(greet("esm")))
  .listen(Number(process.env.PORT), process.env.HOST);
"""


@pytest.fixture(scope="module")
def greet_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny npm package (a module and a command), packed: a dependency without a registry."""
    root = tmp_path_factory.mktemp("greet")
    package = root / "greet"
    (package / "bin").mkdir(parents=True)
    (package / "package.json").write_text(
        json.dumps({"name": "greet", "version": "1.0.0", "main": "index.js", "bin": {"greet-server": "bin/serve.js"}})
    )
    (package / "index.js").write_text("module.exports = (who) => `hello ${who} via greet`;\n")
    serve = package / "bin" / "serve.js"
    serve.write_text(
        "#!/usr/bin/env node\n"
        'const http = require("node:http");\n'
        'const greet = require("..");\n'
        'http.createServer((q, s) => s.end(greet("bin"))).listen(Number(process.env.PORT), process.env.HOST);\n'
    )
    serve.chmod(0o755)
    subprocess.run(["npm", "pack", "--silent", str(package)], cwd=root, check=True, capture_output=True, timeout=60)
    return root / "greet-1.0.0.tgz"


ECHO_MARK_APP = """\
const http = require("node:http");
http
  .createServer((req, res) => res.end({text!r} + (Object.keys(req.headers).some((h) => h.includes("paas")) ? " +mark" : "")))
  .listen(Number(process.env.PORT), process.env.HOST);
"""


def test_a_kept_alive_node_connection_gets_the_new_revision_after_a_switch(start, workspace):
    workspace.publish(workspace.write({"package.json": NODE_PACKAGE, "server.js": ECHO_MARK_APP.format(text="one")}))
    runtime = start(PAAS_RUNTIME="node")
    runtime.wait_for_text("one", timeout=60)
    assert runtime.state()["traffic"] == "direct"  # the old instance holds the client's connection
    conn = http.client.HTTPConnection("127.0.0.1", runtime.port, timeout=5)
    conn.request("GET", "/")
    first = conn.getresponse()
    assert (first.read(), first.getheader("Connection")) == (b"one", "keep-alive")
    sock = conn.sock

    two = workspace.write({"package.json": NODE_PACKAGE, "server.js": ECHO_MARK_APP.format(text="two")})
    workspace.publish(two)
    runtime.wait_for_state(serving=two, timeout=30)
    conn.request("GET", "/")
    second = conn.getresponse()
    # Forwarded by the old instance to the new one, without the mark reaching the app, and
    # the connection ends there: the client's next one goes to the new instance directly.
    assert (second.read(), second.getheader("Connection")) == (b"two", "close")
    assert conn.sock is None or conn.sock is sock
    conn.close()
    assert get(runtime.port) == (200, "two")


def test_node_adapter_leaves_module_resolution_alone(tmp_path):
    """A bin linked into node_modules/.bin still runs from its real path under the adapter.

    Node's realpath trusts a stat array that any fstat overwrites: the adapter once left a
    socket's mode there, and Node then stopped resolving the main module at the first path
    component it had cached (one it shares with the adapter's own path, as here).
    """
    adapter = tmp_path / "node_handoff.js"
    shutil.copy(NODE_ADAPTER, adapter)
    package = tmp_path / "pkg"
    (package / "bin").mkdir(parents=True)
    (package / "package.json").write_text('{"name": "pkg", "main": "index.js"}')
    (package / "index.js").write_text('module.exports = "resolved from the real path";\n')
    (package / "bin" / "run.js").write_text('console.log(require(".."));\n')
    bin_dir = tmp_path / "app" / "node_modules" / ".bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "run").symlink_to("../../../pkg/bin/run.js")
    with socket.create_server(("127.0.0.1", 0)) as listener, contextlib.ExitStack() as stack:
        ours, theirs = (stack.enter_context(s) for s in socket.socketpair())
        env = os.environ | {
            "NODE_OPTIONS": f'--require "{adapter}"',
            "PAAS_LISTEN_FD": str(listener.fileno()),
            "PAAS_CONTROL_FD": str(theirs.fileno()),
            "PORT": "1",
            "PAAS_PUBLIC_PORT": str(listener.getsockname()[1]),
        }
        result = subprocess.run(["node", str(bin_dir / "run")], env=env, pass_fds=(listener.fileno(), theirs.fileno()),
                                capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "resolved from the real path", result.stderr


def package_json(tarball: Path, start_script: str) -> str:
    return json.dumps(
        {
            "name": "app",
            "version": "1.0.0",
            "type": "module",
            "scripts": {"start": start_script},
            "dependencies": {"greet": f"file:{tarball}"},
        }
    )


def installs(cache_dir: Path) -> dict[str, int]:
    """The published node_modules installs in the cache: name -> inode of the link."""
    node = cache_dir / "node"
    return {p.name: p.lstat().st_ino for p in node.iterdir() if not p.name.startswith(".")} if node.is_dir() else {}


def test_node_app_is_served_and_hot_swapped(start, workspace):
    rev = workspace.write({"package.json": NODE_PACKAGE, "server.js": NODE_APP.format(text="node one")})
    workspace.publish(rev)
    runtime = start(PAAS_RUNTIME="node")
    runtime.wait_for_text("node one", timeout=60)
    state = runtime.wait_for_state(status="serving", serving=rev)
    assert state["runtime"] == "node"
    assert "npm start" in runtime.log()

    workspace.publish(workspace.write({"package.json": NODE_PACKAGE, "server.js": NODE_APP.format(text="node two")}))
    runtime.wait_for_text("node two", timeout=30)


def test_node_dependencies_are_installed_once_per_lockfile(start, workspace, cache_dir, greet_tarball):
    # A dependency used three ways: by the npm start script (its command in .bin),
    # by require() inside it, and by an ES module import in the app.
    workspace.publish(workspace.write({"package.json": package_json(greet_tarball, "greet-server")}))
    runtime = start()
    runtime.wait_for_text("hello bin via greet", timeout=60)
    before = installs(cache_dir)
    log_before = runtime.log().count("building node_modules")

    # Same package.json, new code: the install is reused as it is.
    workspace.publish(
        workspace.write({"package.json": package_json(greet_tarball, "greet-server"), "README.md": "new\n"})
    )
    runtime.wait_for_state(status="serving", serving=workspace.published, timeout=30)
    assert installs(cache_dir) == before
    assert runtime.log().count("building node_modules") == log_before

    # A changed package.json gets an install of its own, beside the first.
    workspace.publish(
        workspace.write({"package.json": package_json(greet_tarball, "node server.mjs"), "server.mjs": SERVER_MJS})
    )
    runtime.wait_for_text("hello esm via greet", timeout=60)
    after = installs(cache_dir)
    assert len(set(after) - set(before)) == 1
    assert all(after[name] == inode for name, inode in before.items())
    # The install is linked into the app's snapshot, never into git-sync's worktree.
    assert not (workspace.root / ".worktrees" / workspace.published / "node_modules").exists()


def test_npm_failure_leaves_the_old_version_serving(start, workspace):
    workspace.publish(workspace.write({"package.json": NODE_PACKAGE, "server.js": NODE_APP.format(text="good")}))
    runtime = start()
    runtime.wait_for_text("good", timeout=60)

    broken = json.dumps({"name": "app", "version": "1.0.0", "dependencies": {"nothing": "file:/nonexistent.tgz"}})
    bad = workspace.write({"package.json": broken, "server.js": NODE_APP.format(text="bad")})
    workspace.publish(bad)
    state = runtime.wait_for_state(status="failed", timeout=60)
    assert state["failed"]["revision"] == bad
    assert state["failed"]["reason"].startswith("npm install exited with code")
    assert "nonexistent" in state["failed"]["reason"]
    assert get(runtime.port) == (200, "good")


def test_static_site_content_types_indexes_and_404s(start, workspace):
    workspace.publish(
        workspace.write(
            {
                "index.html": "<h1>home</h1>",
                "style.css": "body {}",
                "app.js": "console.log(1)",
                "data.json": "{}",
                "logo.svg": "<svg/>",
                ".env": "SECRET=1",
            }
        )
    )
    docs = workspace.root / ".worktrees" / workspace.published / "docs"
    docs.mkdir()
    (docs / "index.html").write_text("<h1>docs</h1>")
    (docs.parent / "empty").mkdir()
    runtime = start()  # detected: only an index.html
    runtime.wait_for_text("<h1>home</h1>", timeout=30)
    assert runtime.wait_for_state(status="serving")["runtime"] == "static"

    def content_type(path: str) -> tuple[int, str]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", runtime.port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            return response.status, response.getheader("Content-Type", "")
        finally:
            conn.close()

    assert content_type("/") == (200, "text/html; charset=utf-8")
    assert content_type("/style.css") == (200, "text/css; charset=utf-8")
    assert content_type("/app.js") == (200, "text/javascript; charset=utf-8")
    assert content_type("/data.json") == (200, "application/json")
    assert content_type("/logo.svg") == (200, "image/svg+xml")
    assert get(runtime.port, "/docs/") == (200, "<h1>docs</h1>")
    assert get(runtime.port, "/docs")[0] == 301
    assert get(runtime.port, "/empty/")[0] == 404  # no directory listings
    assert get(runtime.port, "/missing.html")[0] == 404
    assert get(runtime.port, "/.env")[0] == 404

    # A site's own 404 page is used, with the 404 status; the switch is atomic.
    workspace.publish(workspace.write({"index.html": "<h1>v2</h1>", "404.html": "<p>lost?</p>"}))
    runtime.wait_for_text("<h1>v2</h1>", timeout=30)
    assert get(runtime.port, "/missing.html") == (404, "<p>lost?</p>")
    assert get(runtime.port, "/style.css")[0] == 404  # gone with the old revision


@pytest.mark.parametrize(
    ("files", "runtime_name"),
    [
        ({"requirements.txt": "", "index.html": "x", "package.json": "{}"}, "python"),
        ({"package.json": NODE_PACKAGE, "server.js": NODE_APP.format(text="x"), "index.html": "x"}, "node"),
        ({"index.html": "x"}, "static"),
    ],
)
def test_runtime_detection_order(start, workspace, files, runtime_name):
    if runtime_name == "python":  # no venv to build for a detection test: the app is a file server
        files = {**files, "Procfile": "web: python -m http.server --bind 127.0.0.1 $PORT\n"}
    workspace.publish(workspace.write(files))
    runtime = start()
    state = runtime.wait_for_state(status="serving", timeout=120)
    assert state["runtime"] == runtime_name


def test_a_revision_of_no_known_runtime_fails_and_the_old_one_keeps_serving(start, workspace):
    workspace.publish(workspace.write({"index.html": "still here"}))
    runtime = start()
    runtime.wait_for_text("still here", timeout=30)

    unknown = workspace.write({"main.go": "package main\n"})
    workspace.publish(unknown)
    state = runtime.wait_for_state(status="failed", timeout=30)
    assert state["failed"]["revision"] == unknown
    assert state["failed"]["reason"].startswith(
        "cannot tell the runtime: no requirements.txt, pyproject.toml, package.json or index.html; "
        "set runtime in the manifest"
    )
    assert state["events"][-1]["event"] == "failed"
    assert get(runtime.port) == (200, "still here")
    wait_for(lambda: "cannot tell the runtime" in runtime.log(), 5, what="the reason in the log")


SECRET = "=platform-secret-7d41c0"  # in a file outside the revision: no revision's build may show it


@pytest.mark.parametrize(("name", "files"), [
    ("requirements.txt", {"app.py": "app = None\n"}),  # pip quoted the line it could not parse
    ("pyproject.toml", {"app.py": "app = None\n"}),
    ("package.json", {"server.js": NODE_APP.format(text="x")}),
    ("package-lock.json", {"package.json": NODE_PACKAGE, "server.js": NODE_APP.format(text="x")}),
    ("Procfile", {"index.html": "x"}),
])
def test_a_file_the_build_reads_may_not_link_out_of_the_revision(start, workspace, tmp_path, name, files):
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    workspace.publish(workspace.write({"index.html": "still here"}))
    runtime = start()
    runtime.wait_for_text("still here", timeout=30)

    linked = workspace.write(files)
    (workspace.root / ".worktrees" / linked / name).symlink_to(secret)
    workspace.publish(linked)
    state = runtime.wait_for_state(status="failed", timeout=60)
    assert state["failed"]["revision"] == linked
    assert state["failed"]["reason"] == (f"{name} is a symlink to a path outside the app ({secret}): commit the file "
                                         "itself, or a link to a file inside the repository")
    assert SECRET not in json.dumps(runtime.state()) and SECRET not in runtime.log()
    assert get(runtime.port) == (200, "still here")


def test_the_static_runtime_serves_nothing_through_a_link_out_of_the_revision(start, workspace, tmp_path):
    secret = tmp_path / "secret.html"
    secret.write_text("<p>platform secret</p>")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "index.html").write_text("<p>outside index</p>")
    revision = workspace.write({"index.html": "<h1>home</h1>", "real/page.html": "<p>inside</p>", "docs/.keep": ""})
    tree = workspace.root / ".worktrees" / revision
    (tree / "secret.html").symlink_to(secret)  # a file out
    (tree / "out").symlink_to(tmp_path / "outside")  # a directory out
    (tree / "docs" / "index.html").symlink_to(secret)  # a directory's index out
    (tree / "404.html").symlink_to(secret)  # the not-found page out
    (tree / "alias.html").symlink_to("real/page.html")  # links inside keep working
    (tree / "inner").symlink_to("real")
    workspace.publish(revision)
    runtime = start(PAAS_RUNTIME="static")
    runtime.wait_for_text("<h1>home</h1>", timeout=30)
    for path in ("/secret.html", "/out/", "/out/index.html", "/docs/", "/nope.html"):
        status, body = get(runtime.port, path)
        assert status == 404 and "secret" not in body and "outside" not in body, (path, status, body)
    assert get(runtime.port, "/alias.html") == (200, "<p>inside</p>")
    assert get(runtime.port, "/inner/page.html") == (200, "<p>inside</p>")
