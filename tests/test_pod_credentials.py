"""Every control endpoint of a pod wants the pod's credential, which only the platform and that
pod hold: probed as another local user (uid 65534) against a real `paas up` with two apps,
each endpoint refuses a request with no credential, a wrong one and the other pod's — and
nothing changes — while the platform's own calls go through. On Docker the credential is a
file in the containers, never in `docker inspect`, and the pod's address refuses requests
without it."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import docker
import pytest
import requests

from helpers import get_text, set_text, stdlib_app, stdlib_manifest, wait_for
from paas import podspec

pytestmark = pytest.mark.slow
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
SIDECARS = "sidecars: [topz, config]\n"

# Run as uid 65534: sends each request it reads from stdin, prints [status, body] of each.
PROBE = r"""
import json, sys, urllib.error, urllib.request
answers = []
for method, url, body, token in json.load(sys.stdin):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    data = json.dumps(body).encode() if body is not None else (b"" if method in ("POST", "PUT") else None)
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answers.append([response.status, response.read().decode()])
    except urllib.error.HTTPError as e:
        answers.append([e.code, e.read().decode()])
print(json.dumps(answers))
"""


def as_nobody(requests_: list[list]) -> list[tuple[int, str]]:
    """Send ``requests_`` ([method, url, body, token]) as uid 65534; each answer's (status, body)."""
    done = subprocess.run([*NOBODY, sys.executable, "-I", "-c", PROBE], input=json.dumps(requests_),
                          capture_output=True, text=True, cwd="/", timeout=120, check=True)
    return [(status, body) for status, body in json.loads(done.stdout)]


def container_env(cp, app: str, container: str) -> dict[str, str]:
    """The environment of a local pod's container, read from its main process."""
    needle = f"/{app}/{container}".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(b"PAAS_LOCAL_POD=") and v.endswith(needle) for v in raw):
            env = dict(v.decode().partition("=")[::2] for v in raw if b"=" in v)
            if any(key.endswith(("_BIND", "_ADDR")) for key in env):  # the container's own process
                return env
    raise AssertionError(f"no process of {app}/{container}")


def hostile_settings(mark: Path) -> dict:
    """Settings a runtime would take without a credential: a command that leaves a file."""
    return {"run": f"sh -c 'id > {mark}; exec python server.py'", "healthcheck": "/", "health_timeout": 20.0,
            "env": {}, "config": {}, "config_version": 0, "config_reload": "restart", "generation": 0,
            "version": "hostile", "issued": 9e9}


@pytest.fixture(scope="module")
def two_pods(control_plane, tmp_path_factory):
    """`guarded` (pushed, serving "one", with topz and config) and `bystander` beside it."""
    cp = control_plane
    base = tmp_path_factory.mktemp("creds")
    repo = stdlib_app(base / "guarded", "one")
    url = cp.create(stdlib_manifest("guarded") + SIDECARS)["url"]
    cp.create(stdlib_manifest("bystander") + SIDECARS)
    cp.push(repo, "guarded")
    workspace = cp.data_dir / "pods" / "guarded" / "workspace"
    wait_for(lambda: (workspace / "config" / "config.json").exists(), 30, what="the config sidecar given its config")
    wait_for(lambda: container_env(cp, "bystander", "topz"), 30, what="the bystander's pod")
    return cp, repo, url, base


def credential_of(cp, app: str) -> str:
    return (cp.data_dir / "pods" / app / podspec.CREDENTIAL / podspec.CREDENTIAL_FILE).read_text()


def endpoints(cp, app: str, mark: Path) -> dict[str, tuple[str, str, dict | None]]:
    """Every control endpoint of the app's pod: name -> (method, url, hostile body)."""
    runtime = container_env(cp, app, "runtime")["PAAS_STATUS_BIND"]
    sync = container_env(cp, app, "git-sync")["GITSYNC_HTTP_BIND"]
    config = container_env(cp, app, "config")["CONFIG_ADDR"]
    topz = container_env(cp, app, "topz")["TOPZ_ADDR"]
    evil = {"version": 99, "vars": {"GREETING": "hostile"}, "reload": "restart", "signal": "SIGHUP",
            "webhook": "/-/reload"}
    return {
        "runtime settings": ("PUT", f"http://{runtime}/settings", hostile_settings(mark)),
        "runtime status": ("GET", f"http://{runtime}/status", None),
        "config": ("PUT", f"http://{config}/config", evil),
        "config status": ("GET", f"http://{config}/status", None),
        "sync": ("POST", f"http://{sync}/sync", None),
        "topz": ("GET", f"http://{topz}/topz?format=json", None),
    }


def runtime_state(found: dict, credential: str) -> tuple:
    """What the runtime runs: its settings' version, what it was last sent, each instance."""
    state = requests.get(found["runtime status"][1], headers={"Authorization": f"Bearer {credential}"}, timeout=5).json()
    return state["settings"], state["received"], sorted((i["pid"], i["settings"]) for i in state["instances"])


def test_only_the_platform_and_the_pod_can_read_the_credential(two_pods):
    cp, *_ = two_pods
    mine, theirs = credential_of(cp, "guarded"), credential_of(cp, "bystander")
    assert len(mine) == 64 and mine != theirs  # one per pod
    path = cp.data_dir / "pods" / "guarded" / podspec.CREDENTIAL / podspec.CREDENTIAL_FILE
    refused = subprocess.run([*NOBODY, "cat", str(path)], capture_output=True, text=True)
    assert refused.returncode != 0 and mine not in refused.stdout
    for container in ("runtime", "git-sync", "config", "topz"):
        env = container_env(cp, "guarded", container)
        assert mine not in "\0".join(f"{k}={v}" for k, v in env.items())  # a file's path, never the secret
    assert {k: v for k, v in container_env(cp, "guarded", "git-sync").items() if "TOKEN" in k} == {
        "PAAS_SYNC_TOKEN_FILE": str(path)}


def test_every_control_endpoint_refuses_another_user_and_nothing_changes(two_pods, tmp_path):
    cp, repo, url, _ = two_pods
    mark = tmp_path / "hostile-run-was-here"
    workspace = cp.data_dir / "pods" / "guarded" / "workspace"
    settings_file = workspace / ".paas-settings.json"
    kept = settings_file.read_text() if settings_file.exists() else None
    config = (workspace / "config" / "config.json").read_text()
    found = endpoints(cp, "guarded", mark)
    before = runtime_state(found, credential_of(cp, "guarded"))
    tries = {"no credential": None, "a wrong one": secrets.token_hex(32), "the other pod's": credential_of(cp, "bystander")}
    probes = [[method, where, body, token] for method, where, body in found.values() for token in tries.values()]
    answers = iter(as_nobody(probes))
    for endpoint in found:
        for attempt in tries:
            status, body = next(answers)
            assert status == 401, f"{endpoint} with {attempt}: {status} {body[:200]}"
            assert body.count("\n") <= 1 and set(json.loads(body)) == {"error"}, f"{endpoint}: {body!r}"
            assert "credential" in json.loads(body)["error"]
    # Nothing changed: the same text served, the same settings kept, the same config written.
    assert get_text(url) == "one"
    assert runtime_state(found, credential_of(cp, "guarded")) == before
    assert (settings_file.read_text() if settings_file.exists() else None) == kept
    assert (workspace / "config" / "config.json").read_text() == config
    # The platform's own calls still go through: a config change, a push, the pod's processes.
    changed = cp.cli("config", "set", "guarded", "GREETING=platform")
    assert changed.returncode == 0, changed.stderr
    set_text(repo, "two")
    assert "paas: v3 live at" in cp.push(repo, "guarded").stderr  # v2: the config change
    assert get_text(url) == "two"
    listed = cp.cli("--json", "ps", "guarded")
    assert listed.returncode == 0, listed.stderr
    assert any("server.py" in p["command"] for p in json.loads(listed.stdout))
    assert json.loads((workspace / "config" / "config.json").read_text()) == {"GREETING": "platform"}
    assert json.loads(settings_file.read_text())["run"] == "python server.py"
    assert not mark.exists()


def test_the_platforms_credential_opens_the_same_endpoints(two_pods, tmp_path):
    """The positive control of the test above: the same requests with the pod's own
    credential are answered (the read-only ones; nothing hostile is sent)."""
    cp, *_ = two_pods
    found = endpoints(cp, "guarded", tmp_path / "unused")
    mine = credential_of(cp, "guarded")
    reads = [[method, where, None, mine] for name, (method, where, _) in found.items() if method == "GET"]
    for status, body in as_nobody(reads + [["POST", found["sync"][1], None, mine]]):
        assert status == 200, body[:200]


@pytest.mark.docker
def test_on_docker_the_credential_is_a_file_in_the_containers_and_the_pod_refuses_requests_without_it(
    docker_control_plane, tmp_path
):
    cp = docker_control_plane
    repo = stdlib_app(tmp_path / "sealed", "one")
    cp.create(stdlib_manifest("sealed") + "sidecars: [topz, config, https]\n")
    cp.push(repo, "sealed")
    client = docker.from_env()
    found = {c.labels["paas.container"]: c for c in client.containers.list(filters={"label": "paas.app=sealed"})}
    secret = found["runtime"].exec_run(["cat", podspec.CREDENTIAL_PATH]).output.decode()
    assert len(secret) == 64
    for name in ("runtime", "git-sync", "config", "topz"):
        held = found[name].exec_run(["stat", "-c", "%a %u", podspec.CREDENTIAL_PATH], user="0").output.decode().split()
        assert held == ["400", "65533"], name  # the container's user's alone
        assert found[name].exec_run(["cat", podspec.CREDENTIAL_PATH]).output.decode() == secret
    assert found["https"].exec_run(["test", "-e", podspec.CREDENTIAL_PATH]).exit_code != 0  # serves no control endpoint
    inspected = subprocess.run(["docker", "inspect", *[c.id for c in found.values()]], capture_output=True, text=True,
                               check=True)
    assert secret not in inspected.stdout
    address = found["pod"].attrs["NetworkSettings"]["Networks"]["paas-sealed-net"]["IPAddress"]
    probes = [["GET", f"http://{address}:{podspec.STATUS_PORT}/status", None, None],
              ["PUT", f"http://{address}:{podspec.STATUS_PORT}/settings", hostile_settings(Path("/tmp/x")), None],
              ["POST", f"http://{address}:{podspec.SYNC_PORT}/sync", None, secrets.token_hex(32)]]
    assert [status for status, _ in as_nobody(probes)] == [401, 401, 401]
    # The app's own port, behind the https sidecar, is bound on the pod's loopback only.
    inner = json.loads(found["runtime"].labels["paas.ports"])["http"]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{address}:{inner}/", timeout=5)
    assert found["runtime"].exec_run(["python", "-c", f"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{inner}/').read().decode())"]).output.decode().strip() == "one"
    assert cp.api("DELETE", "/apps/sealed").status_code == 200
