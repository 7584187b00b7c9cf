"""Push-to-live latency: from `git push` starting to the app serving the pushed text.

A push returns once its release serves (it reports the deploy), so its duration is most of
that; what is left after it returns shows the push doesn't answer before the new code serves.
Starts `paas up` on a free port with a fresh data directory, deploys samples/hello-flask,
pushes N edits and prints p50/p95 (target p50 <= 1 s, p95 <= 2 s); then creates and pushes
a second app and prints create -> first 200 with the images built and the dependency
cache warm (target <= 5 s). Each backend given is measured in turn, in one run, and the
figures are printed side by side; `kubernetes` starts the test cluster (`tests/kube/cluster.sh`,
pods on the node's network) unless `--kubeconfig` names one.

    python bench/push_to_live.py [--edits 20] [--backend local,docker,kubernetes]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from stats import percentile  # noqa: E402

from helpers import SAMPLES, ControlPlane, commit_change, free_port, get_text, sample_repo, wait_for  # noqa: E402

CLUSTER = Path(__file__).resolve().parent.parent / "tests" / "kube" / "cluster.sh"
BACKENDS = ("local", "docker", "kubernetes")

APP = "hello-flask"



def remove_cache_volume(data_dir: Path) -> None:
    """The docker backend's dependency cache outlives apps; a bench's control plane does not."""
    import docker

    instance = (data_dir / "instance").read_text().strip()
    client = docker.from_env()
    for volume in client.volumes.list(filters={"label": f"paas.instance={instance}"}):
        volume.remove(force=True)


def measure(backend: str, edits: int, trigger: str, base: Path, env: dict[str, str]) -> dict[str, float]:
    cp = ControlPlane(base / "data", base / "cli-config", backend=backend)
    cp.env = cp.env | {"PAAS_SYNC_TRIGGER": trigger} | env
    cp.start()
    try:
        repo = sample_repo(APP, base / APP)
        url = cp.create((SAMPLES / APP / "paas.yaml").read_text())["url"]
        started = time.monotonic()
        cp.push(repo, APP)
        wait_for(lambda: "from paas!" in (get_text(url) or ""), 300, 0.1, "first deploy")
        first = time.monotonic() - started
        latencies, pushes = [], []
        previous = "from paas!"
        for n in range(1, edits + 1):
            text = f"from paas #{n}!"
            commit_change(repo, "app.py", previous, text, f"edit {n}")
            previous = text
            t0 = time.monotonic()
            cp.push(repo, APP)
            t1 = time.monotonic()
            wait_for(lambda text=text: text in (get_text(url, 1.0) or ""), 60, 0.01, f"edit {n}")
            pushes.append(t1 - t0)
            latencies.append(time.monotonic() - t1)
        second = sample_repo(APP, base / "second")
        manifest = (SAMPLES / APP / "paas.yaml").read_text().replace(f"name: {APP}", "name: second")
        t0 = time.monotonic()
        url2 = cp.create(manifest)["url"]
        cp.push(second, "second")
        wait_for(lambda: get_text(url2, 1.0), 300, 0.02, "second app")
        create_to_200 = time.monotonic() - t0
    finally:
        for app in (APP, "second"):
            cp.api("DELETE", f"/apps/{app}")
        cp.stop()
        if backend == "docker":
            remove_cache_volume(cp.data_dir)
    totals = [push + after for push, after in zip(pushes, latencies, strict=True)]
    return {"first": first, "push_p50": statistics.median(pushes), "push_p95": percentile(pushes, 0.95),
            "after_p50": statistics.median(latencies), "after_max": max(latencies),
            "p50": statistics.median(totals), "p95": percentile(totals, 0.95), "create": create_to_200}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--backend", default="local", help=f"comma-separated, of {', '.join(BACKENDS)}")
    parser.add_argument("--sync-trigger", choices=("auto", "http", "signal"), default="auto",
                        help="how pushes reach git-sync (PAAS_SYNC_TRIGGER): signal, as with upstream's")
    parser.add_argument("--kubeconfig", help="a cluster for the kubernetes backend (default: start the test cluster)")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend {unknown[0]!r}: use {', '.join(BACKENDS)}")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="paas-bench-") as tmp:
        cluster_env: dict[str, str] | None = None
        try:
            for backend in backends:
                env: dict[str, str] = {}
                if backend == "kubernetes":
                    kubeconfig = args.kubeconfig
                    if kubeconfig is None:
                        cluster_env = os.environ | {"PAAS_KUBE_RUN": f"{tmp}/kube", "PAAS_KUBE_PORT": str(free_port()),
                                                    "PAAS_KUBE_ETCD_PORT": str(free_port())}
                        subprocess.run([str(CLUSTER), "build"], check=True)
                        subprocess.run([str(CLUSTER), "up"], env=cluster_env, check=True, stdout=subprocess.DEVNULL)
                        kubeconfig = f"{tmp}/kube/admin.kubeconfig"
                    env = {"KUBECONFIG": kubeconfig, "PAAS_KUBE_HOST_NETWORK": "1", "PAAS_KUBE_NAMESPACE": "paas-bench",
                           "PAAS_KUBE_GRACE_PERIOD": "2"}
                results[backend] = measure(backend, args.edits, args.sync_trigger, Path(tmp) / backend, env)
                r = results[backend]
                print(f"{backend}: first deploy (cold dependency cache) {r['first']:.2f} s", flush=True)
        finally:
            if cluster_env is not None:
                subprocess.run([str(CLUSTER), "down"], env=cluster_env, check=False)
    print(f"\nsync trigger: {args.sync_trigger}; edits per backend: {args.edits}")
    print(f"{'backend':<11} {'push p50':>9} {'push p95':>9} {'after p50':>10} {'after max':>10} "
          f"{'live p50':>9} {'live p95':>9} {'create->200':>12}")
    for backend, r in results.items():
        print(f"{backend:<11} {r['push_p50']:>8.3f}s {r['push_p95']:>8.3f}s {r['after_p50']:>9.3f}s "
              f"{r['after_max']:>9.3f}s {r['p50']:>8.3f}s {r['p95']:>8.3f}s {r['create']:>11.2f}s")
    print("push: git push's duration (it returns once live); after: push returned -> new text served; "
          "live: push started -> new text served")
    for backend, r in results.items():
        met = "met" if r["p50"] <= 1 and r["p95"] <= 2 else "MISSED"
        print(f"{backend}: target p50 <= 1 s, p95 <= 2 s: {met}; create + push -> first 200 <= 5 s: "
              f"{'met' if r['create'] <= 5 else 'MISSED'}")


if __name__ == "__main__":
    main()
