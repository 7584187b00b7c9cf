"""The credential check each container of a pod makes, unit by unit: the comparison itself
(one module per sidecar package, which share no code), and each sidecar run as a real
process with a credential file (it wants it) and without one (standalone, as its README
documents: open) — except the runtime, which without a credential takes no settings at all;
then where the pod spec puts the credential, and which ports it keeps on a pod's loopback."""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from gitsync_harness import Remote, StartSidecar
from helpers import free_port, wait_for
from paas import appspec, podspec
from paas import manifest as manifest_mod
from paas.appspec import Platform
from paas.podmodel import APP, SECRET, SYNC, PodSpec
from paas.store import App
from runtime_harness import Workspace

MODULES = ["paas_runtime.credential", "paas_config.credential", "paas_topz.credential", "git_sync.credential"]
KNOWN = b"0f" * 32


@pytest.fixture(params=MODULES)
def credential(request):
    return importlib.import_module(request.param)


@pytest.mark.parametrize(("header", "allowed"), [
    (f"Bearer {KNOWN.decode()}", True),
    (f"bearer  {KNOWN.decode()} ", True),  # the scheme is case-insensitive (RFC 9110)
    (None, False),
    ("", False),
    ("Bearer", False),
    ("Bearer ", False),
    (KNOWN.decode(), False),  # no scheme
    (f"Basic {KNOWN.decode()}", False),
    (f"Bearer {KNOWN.decode()[:-1]}", False),  # a prefix
    (f"Bearer {KNOWN.decode()}0", False),  # one character more
    (f"Bearer {'0e' * 32}", False),
    ("Bearer \u00ff\u0100", False),  # not latin-1: refused, not an exception
])
def test_the_comparison(credential, header, allowed):
    assert credential.allows(KNOWN, header) is allowed


def test_without_a_credential_every_request_passes_the_check(credential):
    assert credential.allows(None, None) and credential.allows(None, "Bearer anything")


def test_the_credential_file_is_read_whole_or_refused_in_one_sentence(credential, tmp_path):
    (tmp_path / "token").write_text(KNOWN.decode() + "\n")
    assert credential.read(str(tmp_path / "token")) == KNOWN
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(credential.CredentialError, match=r"^the credential file .*/empty is empty$"):
        credential.read(str(tmp_path / "empty"))
    with pytest.raises(credential.CredentialError, match=r"^cannot read the credential file .*/none: No such file or directory$"):
        credential.read(str(tmp_path / "none"))


def token_file(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "credential" / "token"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    secret = secrets.token_hex(32)
    path.write_text(secret)
    return path, {"Authorization": f"Bearer {secret}"}


class Process:
    """A sidecar's console script as a real process on a free loopback port."""

    def __init__(self, argv: list[str], env: dict[str, str], tmp_path: Path, ready: str) -> None:
        self.log = tmp_path / f"{argv[2]}-{free_port()}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.ready = ready

    def wait(self, url: str) -> None:
        wait_for(lambda: requests.get(url + self.ready, timeout=2).status_code == 200, 20, 0.05, f"{url} up")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def run(tmp_path):
    started: list[Process] = []

    def run(module: str, ready: str, *args: str, **env: str) -> Process:
        process = Process([sys.executable, "-m", module, *args], os.environ | env, tmp_path, ready)
        started.append(process)
        return process

    yield run
    for process in started:
        process.stop()


def test_topz_standalone_answers_anyone_and_with_a_credential_only_its_holder(run, tmp_path):
    open_port, guarded_port = free_port(), free_port()
    run("paas_topz", "/healthz", f"--addr=127.0.0.1:{open_port}").wait(f"http://127.0.0.1:{open_port}")
    assert "paas_topz" in requests.get(f"http://127.0.0.1:{open_port}/topz", timeout=5).text  # as its README shows
    path, auth = token_file(tmp_path)
    run("paas_topz", "/healthz", TOPZ_ADDR=f"127.0.0.1:{guarded_port}", TOPZ_TOKEN_FILE=str(path)).wait(
        f"http://127.0.0.1:{guarded_port}")
    refused = requests.get(f"http://127.0.0.1:{guarded_port}/topz", timeout=5)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert refused.json() == {"error": "this endpoint needs the pod's credential (Authorization: Bearer, TOPZ_TOKEN_FILE)"}
    assert "paas_topz" in requests.get(f"http://127.0.0.1:{guarded_port}/topz", headers=auth, timeout=5).text


def test_topz_with_an_unreadable_credential_file_stops_in_one_sentence(tmp_path):
    done = subprocess.run([sys.executable, "-m", "paas_topz", f"--token-file={tmp_path / 'none'}"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr == (f"paas-topz: error: TOPZ_TOKEN_FILE: cannot read the credential file {tmp_path / 'none'}: "
                           "No such file or directory\n")


CONFIG = {"version": 1, "vars": {"GREETING": "hi"}, "reload": "none", "signal": "SIGHUP", "webhook": "/"}


def test_config_standalone_takes_a_config_from_anyone_and_with_a_credential_only_from_its_holder(run, tmp_path):
    port = free_port()
    run("paas_config", "/healthz", f"--addr=127.0.0.1:{port}", f"--dir={tmp_path / 'open'}").wait(
        f"http://127.0.0.1:{port}")
    assert requests.put(f"http://127.0.0.1:{port}/config", json=CONFIG, timeout=5).json()["version"] == 1
    assert json.loads((tmp_path / "open" / "config.json").read_text()) == {"GREETING": "hi"}
    port = free_port()
    path, auth = token_file(tmp_path)
    run("paas_config", "/healthz", CONFIG_ADDR=f"127.0.0.1:{port}", PAAS_CONFIG_DIR=str(tmp_path / "config"),
        CONFIG_TOKEN_FILE=str(path)).wait(f"http://127.0.0.1:{port}")  # /healthz stays open: probes call it
    base = f"http://127.0.0.1:{port}"
    for method, route in (("PUT", "/config"), ("GET", "/status")):
        refused = requests.request(method, base + route, json=CONFIG, headers={"Authorization": "Bearer nope"}, timeout=5)
        assert refused.status_code == 401, route
        assert refused.json() == {"error": "this endpoint needs the pod's credential (Authorization: Bearer, CONFIG_TOKEN_FILE)"}
    assert not (tmp_path / "config").exists()  # nothing written
    assert requests.put(base + "/config", json=CONFIG, headers=auth, timeout=5).json()["version"] == 1
    assert requests.get(base + "/status", headers=auth, timeout=5).json()["version"] == 1


def runtime_env(workspace: Workspace, status: int, **env: str) -> dict[str, str]:
    return os.environ | {"PORT": str(free_port()), "PAAS_APP_DIR": str(workspace.link), "PAAS_RUN": "true",
                         "PAAS_RUNTIME": "python", "PAAS_STATUS_BIND": f"127.0.0.1:{status}"} | env


SETTINGS = {"run": "touch {mark}", "healthcheck": "/", "health_timeout": 5.0, "env": {}, "config": {},
            "config_version": 0, "config_reload": "restart", "generation": 0, "version": "v2", "issued": 1.0}


def test_a_runtime_without_a_credential_reports_its_state_but_takes_no_settings(tmp_path):
    workspace = Workspace(tmp_path / "workspace")
    status = free_port()
    mark = tmp_path / "ran"
    env = runtime_env(workspace, status)
    process = Process([sys.executable, "-m", "paas_runtime"], env, tmp_path, "/status")
    try:
        process.wait(f"http://127.0.0.1:{status}")
        refused = requests.put(f"http://127.0.0.1:{status}/settings", json=SETTINGS | {"run": f"touch {mark}"}, timeout=5)
        assert refused.status_code == 403
        assert refused.json() == {"error": "this runtime takes no settings over the network: it was given no "
                                           "credential (PAAS_STATUS_TOKEN_FILE)"}
        assert requests.get(f"http://127.0.0.1:{status}/status", timeout=5).json()["received"] == ""
    finally:
        process.stop()
    assert not mark.exists()


def test_a_runtime_with_a_credential_wants_it_for_its_state_and_its_settings(tmp_path):
    workspace = Workspace(tmp_path / "workspace")
    status = free_port()
    path, auth = token_file(tmp_path)
    process = Process([sys.executable, "-m", "paas_runtime"], runtime_env(workspace, status, PAAS_STATUS_TOKEN_FILE=str(path)),
                      tmp_path, "/status")
    base = f"http://127.0.0.1:{status}"
    try:
        wait_for(lambda: requests.get(base + "/status", headers=auth, timeout=2).ok, 20, 0.05, "the runtime up")
        for method, route in (("GET", "/status"), ("PUT", "/settings")):
            refused = requests.request(method, base + route, json=SETTINGS, timeout=5)
            assert refused.status_code == 401, route
            assert refused.json() == {"error": "this endpoint needs the pod's credential (Authorization: Bearer, "
                                               "PAAS_STATUS_TOKEN_FILE)"}
        assert requests.put(base + "/settings", json=SETTINGS, headers=auth, timeout=5).json() == {"settings": "v2"}
    finally:
        process.stop()


def test_a_runtime_with_an_unreadable_credential_file_stops_in_one_sentence(tmp_path):
    workspace = Workspace(tmp_path / "workspace")
    env = runtime_env(workspace, free_port(), PAAS_STATUS_TOKEN_FILE=str(tmp_path / "none"))
    done = subprocess.run([sys.executable, "-m", "paas_runtime"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr == (f"paas-runtime: error: PAAS_STATUS_TOKEN_FILE: cannot read the credential file "
                           f"{tmp_path / 'none'}: No such file or directory\n")


def test_git_sync_with_a_credential_syncs_on_post_only_for_its_holder(upstream: Remote, start_sidecar: StartSidecar,
                                                                      tmp_path):
    first = upstream.commit("v1")
    path, auth = token_file(tmp_path)
    sidecar = start_sidecar(*upstream.args, "--period=1h", env={"PAAS_SYNC_TOKEN_FILE": str(path)})
    sidecar.wait_ready()  # readiness stays open: probes call it
    second = upstream.commit("v2")
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": auth["Authorization"].upper()}):
        refused = requests.post(sidecar.url("/sync"), headers=headers, timeout=10)
        assert refused.status_code == 401
        assert refused.json() == {"error": "this endpoint needs the pod's credential (Authorization: Bearer, "
                                           "PAAS_SYNC_TOKEN_FILE)"}
    assert sidecar.linked_hash() == first
    assert sidecar.metric('git_sync_count_total{status="success"}') == 1  # /metrics stays open, as upstream's
    assert requests.post(sidecar.url("/sync"), headers=auth, timeout=10).json() == {"hash": second, "changed": True}


def test_git_sync_with_an_unreadable_credential_file_exits_in_one_line(upstream: Remote, start_sidecar: StartSidecar,
                                                                       tmp_path):
    upstream.commit("v1")
    sidecar = start_sidecar(*upstream.args, env={"PAAS_SYNC_TOKEN_FILE": str(tmp_path / "none")})
    assert sidecar.wait_exit() == 1
    assert f"can't use $PAAS_SYNC_TOKEN_FILE: cannot read the credential file {tmp_path / 'none'}" in sidecar.output


def pod(name: str, token: str, manifest: str = "") -> PodSpec:
    m = manifest_mod.parse(f"name: {name}\n{manifest}")
    app = App(name, m, 8100, token, 0.0)
    return podspec.build(appspec.resolve(app, Platform("http://127.0.0.1:8000")), Platform("http://127.0.0.1:8000"))


def test_the_pod_spec_carries_the_credential_as_a_secret_for_the_containers_with_control_endpoints():
    spec = pod("shop", "deploy-token-1", "sidecars: [topz, config, https]\n")
    [volume] = [v for v in spec.volumes if v.name == podspec.CREDENTIAL]
    assert volume.kind == SECRET and set(volume.files) == {podspec.CREDENTIAL_FILE}
    secret = volume.files[podspec.CREDENTIAL_FILE]
    assert secret == hmac.new(b"deploy-token-1", b"paas pod credential v1", hashlib.sha256).hexdigest()
    mounted = {c.name: [m for m in c.mounts if m.volume == podspec.CREDENTIAL] for c in spec.containers}
    assert {name for name, mounts in mounted.items() if mounts} == {"git-sync", "runtime", "topz", "config"}
    assert all(m.read_only for mounts in mounted.values() for m in mounts)
    told = {c.name: {k: v for k, v in c.env.items() if v == podspec.CREDENTIAL_PATH} for c in spec.containers}
    assert told == {"git-sync": {"PAAS_SYNC_TOKEN_FILE": podspec.CREDENTIAL_PATH},
                    "runtime": {"PAAS_STATUS_TOKEN_FILE": podspec.CREDENTIAL_PATH},
                    "topz": {"TOPZ_TOKEN_FILE": podspec.CREDENTIAL_PATH},
                    "config": {"CONFIG_TOKEN_FILE": podspec.CREDENTIAL_PATH}, "https": {}}
    assert not any(secret in json.dumps(c.env) for c in spec.containers)
    assert pod("other", "deploy-token-2").volume(podspec.CREDENTIAL).files != volume.files  # one per app


def test_git_sync_is_given_only_variables_upstreams_git_sync_knows_or_ignores():
    from test_git_sync_upstream_flags import UPSTREAM_V47

    known = {name for _, names, *_ in UPSTREAM_V47 for name in names}
    sync = pod("shop", "t").role(SYNC)
    assert sync is not None
    theirs = {k for k in sync.env if k.startswith(("GITSYNC_", "GIT_SYNC_"))}
    assert theirs <= known and theirs  # upstream's names, meaning what upstream means
    assert set(sync.env) - theirs == {"PAAS_SYNC_TOKEN_FILE"}  # ours, in a namespace upstream never reads


def test_docker_binds_a_port_only_the_pod_calls_on_the_pods_loopback():
    fronted = pod("shop", "t", "sidecars: [https]\n")
    runtime = fronted.role(APP)
    assert runtime is not None
    ports = {p.name: p for p in runtime.ports}
    assert ports["http"].pod_only and not ports["http"].publish  # only the https sidecar (and config's webhook) call it
    assert not ports["status"].pod_only  # the control plane reads it at the pod's address
    plain = pod("plain", "t").role(APP)
    assert plain is not None and not any(p.pod_only for p in plain.ports)


def test_the_platform_sends_a_pods_credential_to_that_address_only():
    """A pod's endpoint that answers with a redirect (or an environment naming a proxy) must
    not carry the credential anywhere else: jsonhttp follows neither."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from paas import jsonhttp

    seen: list[str | None] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    elsewhere = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)

    class Redirecting(Elsewhere):
        def do_GET(self):  # noqa: N802
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{elsewhere.server_address[1]}/status")
            self.send_header("Content-Length", "0")
            self.end_headers()

    pod = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    for server in (elsewhere, pod):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = {"http_proxy": f"http://127.0.0.1:{elsewhere.server_address[1]}", "no_proxy": ""}
    try:
        with pytest.MonkeyPatch.context() as env:
            for name, value in proxy.items():
                env.setenv(name, value)
            status, _ = jsonhttp.call("GET", f"http://127.0.0.1:{pod.server_address[1]}/status", 5, credential="s3cret")
    finally:
        pod.shutdown()
        elsewhere.shutdown()
    assert status == 302 and seen == []
