"""Memory of an idle platform: the control plane's RSS, and per pod the PSS of the platform's
own processes (everything but the app's): git-sync, the runtime supervisor, sidecars.

Starts `paas up` (local backend) on a fresh data directory, deploys N copies of
samples/hello-flask and lets them idle, then reads /proc/<pid>/smaps_rollup of every process
(PSS splits a page shared by k processes k ways, so N pods of the same programs add up to
what they really cost). Targets: platform processes <= 30 MB PSS per pod with 20 idle pods,
the API (gunicorn's master and worker) <= 60 MB PSS idle; the other parts `paas up` runs (the
supervisor, the router, the pod host) are shown beside it.

    python bench/memory.py [--pods 20] [--idle 30] [--sidecars topz]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers import APPS_ROOT, SAMPLES, ControlPlane, get_text, sample_repo  # noqa: E402
from paas.supervisor import read_parts  # noqa: E402

MARKER = b"PAAS_LOCAL_POD="


def rollup(pid: int) -> dict[str, int]:
    """kB figures of /proc/<pid>/smaps_rollup (Rss, Pss, ...)."""
    figures = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        figures[key] = int(value.split()[0])
    return figures


def marker(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    found = next((v for v in environ if v.startswith(MARKER)), None)
    return found[len(MARKER):].decode() if found else None


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def pod_processes() -> dict[tuple[str, str], list[int]]:
    """(app, container) -> pids, for every process of a local pod."""
    found = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (mark := marker(int(entry.name))):
            _root, app, container = mark.rsplit("/", 2)
            found[(app, container)].append(int(entry.name))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds to idle before measuring")
    parser.add_argument("--sidecars", default="", help="PAAS_DEFAULT_SIDECARS for the run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="paas-bench-") as tmp:
        base = Path(tmp)
        cp = ControlPlane(base / "data", base / "cli-config")
        cp.env = cp.env | {"PAAS_DEFAULT_SIDECARS": args.sidecars}
        cp.start()
        try:
            manifest = (SAMPLES / "hello-flask" / "paas.yaml").read_text()
            for number in range(args.pods):
                name = f"idle{number:02d}"
                repo = sample_repo("hello-flask", base / name)
                url = cp.create(manifest.replace("name: hello-flask", f"name: {name}"))["url"]
                cp.push(repo, name)
                assert "Hello" in (get_text(url) or "")
            time.sleep(args.idle)  # a measurement of the idle state: nothing to poll for
            # The platform's own processes: `paas up` (the supervisor) and each part it runs,
            # the API's gunicorn worker beside its master.
            parts = {"supervisor (paas up)": [cp.proc.pid]}
            for name, part in read_parts(cp.data_dir)["parts"].items():
                parts[name] = [part["pid"], *children(part["pid"])] if name == "API" else [part["pid"]]
            plane = {name: [rollup(pid) for pid in pids] for name, pids in parts.items()}
            pods = pod_processes()
            per_container: dict[str, list[int]] = defaultdict(list)
            per_pod: dict[str, int] = defaultdict(int)
            app_pss: list[int] = []
            for (app, container), pids in pods.items():
                pss = sum(rollup(pid)["Pss"] for pid in pids if Path(f"/proc/{pid}").exists())
                if container == "runtime":
                    # The supervisor is the container's first process; the rest is the app.
                    supervisor = min(pids)
                    own = rollup(supervisor)["Pss"]
                    app_pss.append(pss - own)
                    pss = own
                per_container[container].append(pss)
                per_pod[app] += pss
        finally:
            cp.stop()
            shutil.rmtree(APPS_ROOT, ignore_errors=True)
    print(f"{args.pods} idle pods of hello-flask (local backend), sidecars: {args.sidecars or 'none'}")
    for name, figures in plane.items():
        rss, pss = (sum(f[key] for f in figures) / 1024 for key in ("Rss", "Pss"))
        print(f"  {name:<22} RSS {rss:5.1f} MB, PSS {pss:5.1f} MB ({len(figures)} process{'es' * (len(figures) > 1)})")
    total = sum(f["Pss"] for figures in plane.values() for f in figures) / 1024
    api = sum(f["Pss"] for f in plane["API"]) / 1024
    print(f"control plane: PSS {total:.1f} MB in all its processes (pages they share counted once), "
          f"the API's {api:.1f} MB of it (target for the API <= 60 MB: {'met' if api <= 60 else 'MISSED'})")
    for container, values in sorted(per_container.items()):
        print(f"  {container + ' (platform)':<22} PSS per pod: median {statistics.median(values) / 1024:5.1f} MB")
    print(f"  {'the app (gunicorn)':<22} PSS per pod: median {statistics.median(app_pss) / 1024:5.1f} MB")
    platform = statistics.median(per_pod.values()) / 1024
    print(f"platform processes per pod: median {platform:.1f} MB PSS (target <= 30 MB): "
          f"{'met' if platform <= 30 else 'MISSED'}")


if __name__ == "__main__":
    main()
