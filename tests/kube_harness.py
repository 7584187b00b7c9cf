"""The test cluster (`tests/kube/cluster.sh`): a real Kubernetes API server, etcd, scheduler,
controller-manager and a kubelet running pods on the local Docker engine, started once per
run for the tests marked `kubernetes`, and a control plane using it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ControlPlane, free_port, wait_for

CLUSTER = Path(__file__).parent / "kube" / "cluster.sh"
NAMESPACE = "paas-test"
BUILD_TIMEOUT = 1800


def kubernetes_problem() -> str | None:
    """Why the cluster can't run here, or None (its binaries are built here, once per machine)."""
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception as e:  # any failure to reach the engine means: no kubelet runtime here
        return f"no Docker engine reachable for the kubelet ({type(e).__name__})"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "the test cluster is built and run as root on Debian"
    built = subprocess.run([str(CLUSTER), "build"], capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if built.returncode != 0:
        return f"the test cluster could not be built: {(built.stderr or built.stdout).strip()[-300:]}"
    return None


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory, pod_images) -> Iterator[Path]:
    """The cluster's admin kubeconfig; the cluster is stopped and cleaned up after the run."""
    run = tmp_path_factory.mktemp("kube")
    env = os.environ | {"PAAS_KUBE_RUN": str(run), "PAAS_KUBE_PORT": str(free_port()),
                        "PAAS_KUBE_ETCD_PORT": str(free_port())}
    try:
        subprocess.run([str(CLUSTER), "up"], env=env, check=True, timeout=300, capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        subprocess.run([str(CLUSTER), "down"], env=env, timeout=120)
        pytest.fail(f"the test cluster did not start: {e.stderr[-2000:]}")
    yield run / "admin.kubeconfig"
    subprocess.run([str(CLUSTER), "down"], env=env, timeout=120, check=True)


def kube_api(kubeconfig: Path):
    """(CoreV1Api, AppsV1Api) for the test cluster."""
    from kubernetes import client, config

    api = config.new_client_from_config(str(kubeconfig))
    return client.CoreV1Api(api), client.AppsV1Api(api)


@pytest.fixture(scope="module")
def kube_control_plane(tmp_path_factory: pytest.TempPathFactory, kube_cluster: Path) -> Iterator[ControlPlane]:
    """A real `paas up --backend kubernetes` on the test cluster, in development mode (pods on
    the node's network: the cluster has neither kube-proxy nor a load balancer)."""
    base = tmp_path_factory.mktemp("kcp")
    cp = ControlPlane(base / "data", base / "cli-config", backend="kubernetes")
    cp.env = cp.env | {"KUBECONFIG": str(kube_cluster), "PAAS_KUBE_HOST_NETWORK": "1",
                       "PAAS_KUBE_NAMESPACE": NAMESPACE, "PAAS_KUBE_GRACE_PERIOD": "2"}
    cp.start()
    yield cp
    if cp.proc is not None and cp.proc.poll() is not None:
        cp.start()
    for app in cp.api("GET", "/apps").json()["apps"]:
        cp.api("DELETE", f"/apps/{app['name']}")
    cp.stop()
    core, _ = kube_api(kube_cluster)
    wait_for(lambda: not core.list_namespaced_pod(NAMESPACE).items, 60, what="no pod left in the namespace")
