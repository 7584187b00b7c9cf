"""topz: its idle RSS, `GET /api/v1/apps/<name>/processes` latency, and what a pod with topz
costs a deploy: create -> first 200 and push -> new text, with topz against without it, in
one run (local backend).

    python bench/topz.py [--pushes 10] [--requests 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from stats import percentile  # noqa: E402

from helpers import ControlPlane, free_port, get_text, set_text, stdlib_app, stdlib_manifest, wait_for  # noqa: E402


def idle_rss(seconds: float) -> float:
    """MB resident of a `paas-topz` that served one request, then idled."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "paas_topz", f"--addr=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/topz", timeout=5).ok, 30, what="topz")
        time.sleep(seconds)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024
    finally:
        proc.kill()
        proc.wait()


def deploys(base: Path, sidecars: str, pushes: int, requests_count: int) -> dict[str, list[float]]:
    cp = ControlPlane(base / "data", base / "cli-config", cache=base.parent / "cache")
    cp.env = cp.env | {"PAAS_DEFAULT_SIDECARS": sidecars}
    cp.start()
    figures: dict[str, list[float]] = {"create": [], "push": [], "processes": []}
    try:
        for round_ in range(3):
            name = f"app{round_}"
            repo = stdlib_app(base / name, "one")
            started = time.monotonic()
            url = cp.create(stdlib_manifest(name))["url"]
            cp.push(repo, name)
            wait_for(lambda url=url: get_text(url) == "one", 60, 0.01, "first 200")
            figures["create"].append(time.monotonic() - started)
        for n in range(pushes):
            set_text(repo, f"v{n}")
            started = time.monotonic()
            cp.push(repo, name)
            wait_for(lambda n=n: get_text(url) == f"v{n}", 60, 0.01, "new text")
            figures["push"].append(time.monotonic() - started)
        if sidecars:
            for _ in range(requests_count):
                started = time.monotonic()
                assert cp.api("GET", f"/apps/{name}/processes").status_code == 200
                figures["processes"].append(time.monotonic() - started)
    finally:
        cp.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=10)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    rss = idle_rss(args.idle)
    with tempfile.TemporaryDirectory(prefix="paas-bench-") as tmp:
        (Path(tmp) / "cache").mkdir()
        without = deploys(Path(tmp) / "without", "", args.pushes, args.requests)
        with_topz = deploys(Path(tmp) / "with", "topz", args.pushes, args.requests)
    print(f"topz idle RSS after {args.idle:g} s: {rss:.1f} MB (target <= 25 MB)")
    processes = with_topz["processes"]
    print(f"GET /api/v1/apps/<name>/processes: p50 {statistics.median(processes) * 1000:.0f} ms, "
          f"p95 {percentile(processes, 0.95) * 1000:.0f} ms (topz samples CPU over 0.1 s)")
    for key, label in (("create", "create + push -> first 200"), ("push", "push -> new text")):
        a, b = statistics.median(with_topz[key]), statistics.median(without[key])
        print(f"{label}: with topz p50 {a:.2f} s, without {b:.2f} s, ratio {a / b:.2f}")


if __name__ == "__main__":
    main()
