"""The kubernetes backend on a real cluster (API server, etcd, scheduler, controller-manager,
kubelet on the local Docker engine): create, push, serve; a second push is a sync in the
running pod; `paas status` shows the Deployment's pod; a restarted control plane adopts the
Deployment; `paas delete` leaves nothing in the namespace."""

from __future__ import annotations

import pytest

from helpers import get_text, set_text, stdlib_app, stdlib_manifest, wait_for
from kube_harness import NAMESPACE, kube_api

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]
APP = "hello-kube"
SELECTOR = f"app.kubernetes.io/instance={APP}"


@pytest.fixture(scope="module")
def api(kube_cluster):
    return kube_api(kube_cluster)


@pytest.fixture(scope="module")
def deployed(kube_control_plane, tmp_path_factory):
    cp = kube_control_plane
    repo = stdlib_app(tmp_path_factory.mktemp("src") / APP, "one")
    url = cp.create(stdlib_manifest(APP))["url"]
    cp.push(repo, APP)
    wait_for(lambda: get_text(url) == "one", 180, 0.2, "the first push served from the cluster")
    return cp, repo, url


def running_pods(core) -> list:
    return [p for p in core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR).items
            if p.status.phase == "Running" and p.metadata.deletion_timestamp is None]


def test_a_pushed_app_runs_in_a_deployment_on_the_kubelet(deployed, api):
    cp, _, _ = deployed
    core, apps = api
    deployment = apps.read_namespaced_deployment(APP, NAMESPACE)
    assert deployment.metadata.labels["app.kubernetes.io/managed-by"] == "paas"
    assert deployment.spec.strategy.type == "Recreate"  # host network: a second pod couldn't bind the ports
    # The kubelet probes every 2 s: the app may answer before its pod is marked Ready.
    pod = wait_for(lambda: (pods := running_pods(core)) and all(s.ready for s in pods[0].status.container_statuses)
                   and pods[0], 30, 0.2, "the pod Ready")
    assert len(running_pods(core)) == 1
    assert pod.spec.host_network is True
    names = {c.name for c in pod.spec.containers}
    assert names == {"git-sync", "runtime"}  # 1.20: no native sidecars
    env = {e.name: e.value for c in pod.spec.containers for e in (c.env or [])}
    assert "PAAS_SETTINGS" not in env and env["PAAS_SETTINGS_SOURCE"].startswith("/etc/paas/pushes/")
    assert "GITSYNC_PASSWORD" not in env and env["GITSYNC_PASSWORD_FILE"] == "/etc/paas/secrets/git-password"

    status = cp.cli("status", APP)
    assert status.returncode == 0, status.stderr
    assert "state:     serving" in status.stdout
    rows = {line.split()[0]: line.split()[1] for line in status.stdout.split("containers:")[1].split("events:")[0]
            .strip().splitlines()}
    assert rows == {"git-sync": "running", "runtime": "running"}


def test_a_second_push_goes_live_in_the_same_pod(deployed, api):
    cp, repo, url = deployed
    core, apps = api
    [before] = running_pods(core)
    generation = apps.read_namespaced_deployment(APP, NAMESPACE).metadata.generation
    set_text(repo, "two")
    cp.push(repo, APP)
    wait_for(lambda: get_text(url) == "two", 60, 0.1, "the second push served")
    [after] = running_pods(core)
    assert after.metadata.uid == before.metadata.uid
    assert apps.read_namespaced_deployment(APP, NAMESPACE).metadata.generation == generation
    logs = cp.cli("logs", APP)
    assert logs.returncode == 0 and any(line.startswith("runtime | ") for line in logs.stdout.splitlines())


def test_a_restarted_control_plane_adopts_the_deployment(deployed, api):
    cp, _, url = deployed
    core, apps = api
    [before] = running_pods(core)
    cp.stop()
    assert get_text(url) == "two"  # pods outlive the control plane
    cp.start()
    cp.after_passes(3)
    [after] = running_pods(core)
    assert after.metadata.uid == before.metadata.uid
    assert [d.metadata.name for d in apps.list_namespaced_deployment(NAMESPACE).items] == [APP]
    assert cp.api("GET", f"/apps/{APP}").json()["state"] == "serving"
    assert get_text(url) == "two"


def test_delete_leaves_nothing_in_the_namespace(deployed, api):
    cp, _, _ = deployed
    core, apps = api
    assert cp.cli("delete", APP, "--yes").returncode == 0

    def leftovers() -> list[str]:
        found = [*apps.list_namespaced_deployment(NAMESPACE).items, *core.list_namespaced_service(NAMESPACE).items,
                 *core.list_namespaced_secret(NAMESPACE, label_selector=SELECTOR).items,
                 *core.list_namespaced_persistent_volume_claim(NAMESPACE).items,
                 *core.list_namespaced_pod(NAMESPACE).items]
        return [f"{o.kind or type(o).__name__} {o.metadata.name}" for o in found]

    wait_for(lambda: not leftovers(), 60, 0.5, "nothing left of the app in the namespace")
