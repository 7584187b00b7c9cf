"""`GET /api/v1/apps` with many apps: the views read the reconciler's snapshot, so listing
N apps costs no backend query (one per reconciler pass, whatever N).

Starts `paas up` (local backend) on a fresh data directory, creates N hosted apps (each a
running pod: git-sync and the runtime waiting for a push), waits until every pod runs, then
times M list requests and prints p50/p99, and the same for `GET /api/v1/apps/<name>`.

    python bench/list_apps.py [--apps 100] [--requests 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from stats import percentile  # noqa: E402

from helpers import ControlPlane, wait_for  # noqa: E402


def timed(session: requests.Session, url: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = session.get(url, timeout=30)
        times.append(time.perf_counter() - started)
        response.raise_for_status()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="paas-bench-") as tmp:
        base = Path(tmp)
        cp = ControlPlane(base / "data", base / "cli-config").start()
        try:
            for number in range(args.apps):
                cp.create(f"name: app{number:03d}\n")

            def all_running() -> bool:
                apps = cp.api("GET", "/apps").json()["apps"]
                return all(a["containers"] and all(c["state"] == "running" for c in a["containers"]) for a in apps)

            wait_for(all_running, 300, 0.5, f"{args.apps} pods running")
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {cp.token}"
            listing = timed(session, f"{cp.url}/api/v1/apps", args.requests)
            one = timed(session, f"{cp.url}/api/v1/apps/app000", args.requests)
        finally:
            cp.stop()
    print(f"{args.apps} apps, {args.requests} requests each (local backend)")
    for label, times in (("GET /api/v1/apps", listing), ("GET /api/v1/apps/<name>", one)):
        print(
            f"{label:<26} p50 {statistics.median(times) * 1000:7.1f} ms   "
            f"p99 {percentile(times, 0.99) * 1000:7.1f} ms   max {max(times) * 1000:7.1f} ms"
        )


if __name__ == "__main__":
    main()
