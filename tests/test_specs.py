"""The pure core from manifest to pod: the app spec (`paas.appspec`: a stored app resolved
against the platform) and the pod spec (`paas.podspec`: the app spec in the pod model).
Data in, decisions out: no store, no processes."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from paas import __version__, appspec, manifest, podspec
from paas.appspec import Platform
from paas.errors import InvalidInput
from paas.podmodel import APP, PERSISTENT, SECRET, SHARED, SIDECAR, SYNC, from_json, to_json
from paas.repos import DEPLOY_REF
from paas.store import App

PLATFORM = Platform("http://10.0.0.1:8000/", domain="example.test", router_tls_port=8443)


def app(text: str = "", name: str = "shop", port: int = 8100, token: str = "deploy-token", password: str = "",
        config: int = 0, generation: int = 0) -> App:
    m = manifest.parse(f"name: {name}\n{text}")
    return App(name, m, port, token, 0.0, git_password=password or m.source.password, config=config,
               generation=generation)


def spec(text: str = "", platform: Platform = PLATFORM, variables: dict[str, str] | None = None,
         **kwargs) -> appspec.AppSpec:
    return appspec.resolve(app(text, **kwargs), platform, variables)


def pod(text: str = "", platform: Platform = PLATFORM, **kwargs):
    return podspec.build(spec(text, platform, **kwargs), platform)


# -- the app spec ----------------------------------------------------------------------------

def test_a_hosted_app_syncs_the_control_planes_repo_with_its_deploy_token():
    source = spec().source
    assert source.repo == "http://10.0.0.1:8000/git/shop.git" and source.ref == DEPLOY_REF
    assert (source.username, source.password) == ("paas", "deploy-token")
    assert source.period == appspec.HOSTED_POLL_SECONDS
    assert "deploy-token" not in repr(source)


def test_a_remote_app_syncs_its_repo_without_the_credentials_in_the_url():
    source = spec("source: {repo: 'https://me:s3cret@git.example.com/me/shop.git', ref: v2, period: 5}\n").source
    assert source.repo == "https://git.example.com/me/shop.git" and source.ref == "v2" and source.period == 5
    assert (source.username, source.password) == ("me", "s3cret")
    assert "s3cret" not in repr(source)


def test_the_platforms_sidecars_come_first_an_app_may_decline_one_and_none_comes_twice():
    platform = Platform("http://cp", default_sidecars=("topz", "config"))
    sidecars = spec("sidecars: [https, config]\ndecline_sidecars: [topz]\n", platform).sidecars
    assert [(s.name, s.from_platform) for s in sidecars] == [("config", True), ("https", False)]


def test_host_names_start_with_the_apps_own_and_each_comes_once():
    assert spec("hosts: [shop.example.com, shop.example.test, www.example.com]\n").hosts == (
        "shop.example.test", "shop.example.com", "www.example.com",
    )


def test_the_variables_at_its_config_version_the_manifests_env_and_settings_are_carried():
    resolved = spec("env: {GREETING: hi}\nconfig: {reload: signal, signal: SIGUSR1}\nhttps: {redirect: true, hsts: 60}\n",
                    variables={"GREETING": "hello"}, config=3, generation=2)
    assert resolved.env == {"GREETING": "hi"} and resolved.config == {"GREETING": "hello"}
    assert (resolved.config_version, resolved.config_reload, resolved.config_signal) == (3, "signal", "SIGUSR1")
    assert (resolved.https_redirect, resolved.hsts, resolved.redirect_port, resolved.generation) == (True, 60, 8443, 2)


def test_the_pod_credential_is_derived_from_the_deploy_token_distinct_per_app_and_never_the_token():
    one, again, other = (appspec.credential(app(token=t)) for t in ("token-1", "token-1", "token-2"))
    assert one == again and one != other and len(one) == 64 and "token-1" not in one
    assert appspec.credentials([app(name="a", token="token-1"), app(name="b", token="token-2")]) == {"a": one, "b": other}
    assert one not in repr(spec(token="token-1"))


# -- the pod spec ----------------------------------------------------------------------------

def test_a_pod_has_git_sync_and_the_runtime_which_publishes_the_apps_port():
    built = pod("runtime: python\nrun: gunicorn app:app\n")
    assert [(c.name, c.role, c.image) for c in built.containers] == [
        ("git-sync", SYNC, f"paas-git-sync:{__version__}"), ("runtime", APP, f"paas-runtime-python:{__version__}"),
    ]
    [published] = built.published
    assert (published.name, published.number) == ("http", 8100) and not built.share_pid
    sync = built.role(SYNC).env
    assert sync["GITSYNC_REPO"] == "http://10.0.0.1:8000/git/shop.git" and sync["GITSYNC_REF"] == DEPLOY_REF
    assert sync["GITSYNC_USERNAME"] == "paas" and sync["GITSYNC_PASSWORD_FILE"].startswith(podspec.SECRETS_DIR)
    live = json.loads(built.role(APP).env["PAAS_SETTINGS"])
    assert built.role(APP).env["PORT"] == "8100" and live["run"] == "gunicorn app:app"


def test_an_app_without_a_runtime_runs_on_the_node_image_which_runs_every_runtime():
    assert pod().role(APP).image == f"paas-runtime-node:{__version__}"


def test_another_git_sync_is_run_as_the_platform_says():
    platform = Platform("http://cp", git_sync_image="registry.k8s.io/git-sync/git-sync:v4.4.0", git_sync_command="/git-sync")
    sync = pod(platform=platform).role(SYNC)
    assert (sync.image, sync.command) == ("registry.k8s.io/git-sync/git-sync:v4.4.0", ("/git-sync",))


@pytest.mark.parametrize(("port", "inner"), [(8100, podspec.INNER_PORT), (podspec.INNER_PORT, podspec.INNER_PORT + 1)])
def test_the_https_sidecar_takes_the_apps_port_and_the_app_moves_inside_the_pod(port, inner):
    built = pod("sidecars: [https]\n", port=port)
    https, runtime = built.containers[2], built.role(APP)
    assert [(p.name, p.number) for p in built.published] == [("https", port)]
    [http] = [p for p in runtime.ports if p.name == "http"]
    assert (http.number, http.publish, http.pod_only) == (inner, False, True) and runtime.env["PORT"] == str(inner)
    assert https.role == SIDECAR and https.peers == {"PROXY_ADDR": ("runtime", "http")}


@pytest.mark.parametrize(("text", "shared"), [
    ("sidecars: [topz]\n", True),
    ("sidecars: [config]\nconfig: {reload: signal}\n", True),
    ("sidecars: [config]\nconfig: {reload: restart}\n", False),
    ("", False),
])
def test_the_pid_namespace_is_shared_only_with_a_sidecar_that_must_see_the_apps_processes(text, shared):
    assert pod(text).share_pid is shared


def test_a_sidecar_no_declaration_names_is_refused_with_the_ones_there_are():
    resolved = spec()
    with pytest.raises(InvalidInput, match=r"unknown sidecar 'nope'; available: config, https, topz"):
        podspec.build(replace(resolved, sidecars=(appspec.Sidecar("nope", True),)), PLATFORM)


def test_volumes_persist_apart_and_the_app_is_told_where_each_is():
    built = pod("volumes: {data: instance, cache-dir: /var/cache/app}\n")
    kinds = {v.name: v.kind for v in built.volumes}
    assert kinds["vol-data"] == kinds["vol-cache-dir"] == PERSISTENT and kinds["cache"] == SHARED
    env = built.role(APP).env
    assert env["PAAS_VOLUME_DATA"] == f"{podspec.VOLUMES}/data" and env["PAAS_VOLUME_CACHE_DIR"] == "/var/cache/app"
    assert json.loads(env["PAAS_VOLUME_LINKS"]) == {"instance": "PAAS_VOLUME_DATA"}  # relative: linked into each revision
    assert {(m.volume, m.path) for m in built.role(APP).mounts} >= {
        ("vol-data", f"{podspec.VOLUMES}/data"), ("vol-cache-dir", "/var/cache/app"),
    }


def test_a_repository_password_is_a_secret_file_of_git_sync_only_never_a_variable():
    built = pod("source: {repo: 'https://me:s3cret@git.example.com/shop.git'}\n")
    secrets = built.volume("secrets")
    assert secrets.kind == SECRET and secrets.files == {podspec.PASSWORD_FILE: "s3cret"}
    assert [c.name for c in built.containers if any(m.volume == "secrets" for m in c.mounts)] == ["git-sync"]
    assert not any("s3cret" in json.dumps(c.env) for c in built.containers)


def test_config_values_are_pushed_not_written_into_the_runtimes_environment():
    built = pod("sidecars: [config]\n", variables={"API_KEY": "k-123"}, config=4)
    assert "k-123" not in json.dumps([c.env for c in built.containers])
    assert json.loads(built.role(APP).env["PAAS_SETTINGS"])["withheld"] is True
    [push] = built.containers[2].pushes
    assert (push.path, push.version, push.body["vars"]) == ("/config", "4", {"API_KEY": "k-123"})
    [settings] = built.role(APP).pushes
    assert settings.path == "/settings" and settings.body["config"] == {"API_KEY": "k-123"}


def test_the_digest_changes_with_what_a_backend_realises_and_not_with_what_is_pushed_live(monkeypatch):
    base = pod("runtime: python\n").digest
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)  # the live settings say when they were issued
    assert pod("runtime: python\n").digest == base
    # Taken live by the running pod: the same pod.
    for live in ("env: {A: b}\n", "run: python other.py\n", "healthcheck: {path: /up}\n"):
        assert pod(f"runtime: python\n{live}").digest == base, live
    assert pod("runtime: python\n", variables={"A": "b"}, config=2).digest == base
    # A new pod.
    for change in ("resources: {memory: 256m}\n", "sidecars: [topz]\n", "volumes: {data: /data}\n", "runtime: node\n"):
        assert pod(f"runtime: python\n{change}").digest != base, change
    assert pod("runtime: python\n", port=8200).digest != base


def test_a_pod_spec_survives_json_and_garbage_is_no_pod_spec():
    built = pod("sidecars: [https, config, topz]\nvolumes: {data: /data}\nresources: {memory: 64m, cpus: 1}\n")
    assert from_json(json.loads(json.dumps(to_json(built)))) == built
    for garbage in ({}, {"app": "x", "containers": [{"name": 1}]}, {"app": "x", "containers": "no"}):
        with pytest.raises(ValueError, match="not a pod spec"):
            from_json(garbage)
