"""Push-to-live latency: from `git push` starting to the app serving the pushed text.

A push returns once its release serves (it reports the deploy), so its duration is most of
that; what is left after it returns shows the push doesn't answer before the new code serves.
Starts `paas up` on a free port with a fresh data directory, deploys samples/hello-flask,
pushes N edits and prints p50/p95 (target p50 <= 1 s, p95 <= 2 s); then creates and pushes
a second app and prints create -> first 200 with the images built and the dependency
cache warm (target <= 5 s).

    python bench/push_to_live.py [--edits 20] [--backend local|docker]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from stats import percentile  # noqa: E402

from helpers import SAMPLES, ControlPlane, commit_change, get_text, sample_repo, wait_for  # noqa: E402

APP = "hello-flask"



def remove_cache_volume(data_dir: Path) -> None:
    """The docker backend's dependency cache outlives apps; a bench's control plane does not."""
    import docker

    instance = (data_dir / "instance").read_text().strip()
    client = docker.from_env()
    for volume in client.volumes.list(filters={"label": f"paas.instance={instance}"}):
        volume.remove(force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--backend", choices=("local", "docker"), default="local")
    parser.add_argument("--sync-trigger", choices=("auto", "http", "signal"), default="auto",
                        help="how pushes reach git-sync (PAAS_SYNC_TRIGGER): signal, as with upstream's")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="paas-bench-") as tmp:
        base = Path(tmp)
        cp = ControlPlane(base / "data", base / "cli-config", backend=args.backend)
        cp.env = cp.env | {"PAAS_SYNC_TRIGGER": args.sync_trigger}
        cp.start()
        try:
            repo = sample_repo(APP, base / APP)
            url = cp.create((SAMPLES / APP / "paas.yaml").read_text())["url"]
            started = time.monotonic()
            cp.push(repo, APP)
            wait_for(lambda: "from paas!" in (get_text(url) or ""), 300, 0.1, "first deploy")
            print(f"first deploy (cold dependency cache): {time.monotonic() - started:.2f} s")
            latencies, pushes = [], []
            previous = "from paas!"
            for n in range(1, args.edits + 1):
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
            wait_for(lambda: get_text(url2, 1.0), 120, 0.02, "second app")
            create_to_200 = time.monotonic() - t0
        finally:
            for app in (APP, "second"):
                cp.api("DELETE", f"/apps/{app}")
            cp.stop()
            if args.backend == "docker":
                remove_cache_volume(cp.data_dir)
    totals = [push + after for push, after in zip(pushes, latencies, strict=True)]
    p50, p95 = statistics.median(totals), percentile(totals, 0.95)
    print(f"backend: {args.backend}; sync trigger: {args.sync_trigger}; edits: {len(latencies)}")
    print(f"git push duration (returns once live): p50 {statistics.median(pushes):.3f} s  "
          f"p95 {percentile(pushes, 0.95):.3f} s")
    print(f"push returned -> new text served: p50 {statistics.median(latencies):.3f} s  max {max(latencies):.3f} s")
    print(f"push started -> new text served: p50 {p50:.3f} s  p95 {p95:.3f} s")
    print(f"target p50 <= 1 s: {'met' if p50 <= 1 else 'MISSED'}; p95 <= 2 s: {'met' if p95 <= 2 else 'MISSED'}")
    print(f"create + push -> first 200 (images built, cache warm): {create_to_200:.2f} s "
          f"(target <= 5 s: {'met' if create_to_200 <= 5 else 'MISSED'})")


if __name__ == "__main__":
    main()
