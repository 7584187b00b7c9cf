"""Hot reload under load: failed requests across deploys, swap -> new text, public port throughput.

Runs the real supervisor (``python -m paas_runtime``) on loopback against a workspace
laid out as git-sync lays it out; a deploy is simulated as git-sync makes one: a new
worktree named by a (fake) commit hash, a new link renamed over the old one, and the
previous worktree removed at once. The app is a small Flask app run by the python
runtime's default command, ``gunicorn app:app`` (one sync worker).

1. Deploys under load: ``--clients`` loopback clients at ``--rate`` requests/s each
   (half open a connection per request, half keep theirs alive as browsers do) while
   ``--deploys`` revisions are published one after the other; every error or non-200
   answer counts as failed (target 0), and a request begun after another one got
   revision N must get N or newer.
2. Link swap -> new text: a poller asks every 10 ms from the swap on; p50/p95
   (target p50 <= 1 s).
3. Throughput of the public port: the same app served directly and through the
   supervisor's port, after a warm-up run of each, alternately (which one goes first
   alternates too), ``--rounds`` times, for new-connection and keep-alive clients; the
   ratio of the medians (target >= 0.8). gunicorn's sync worker and Node.js
   take the port themselves (their connections never pass through the supervisor); an
   app without a handoff adapter, here gunicorn's gthread worker, goes through the
   supervisor's proxy, and is measured too. The load generator is ``wrk`` when it is
   installed (a C client leaves the CPU to the servers, as a remote client would), else
   a Python client, which takes a large share of a small machine's CPU itself.

    python bench/reload.py [--deploys 20] [--clients 2] [--rate 30] [--rounds 5] [--seconds 2]
                           [--only deploys|throughput]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from stats import percentile  # noqa: E402

from helpers import free_port, wait_for  # noqa: E402
from runtime_harness import Load, Runtime, Workspace, get, out_of_order  # noqa: E402

APP = """\
from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return {text!r}
"""
NODE_APP = """\
const http = require("node:http");
http.createServer((req, res) => res.end({text!r})).listen(Number(process.env.PORT), process.env.HOST);
process.on("SIGTERM", () => process.exit(0));
"""
NODE_PACKAGE = '{"name": "bench", "version": "1.0.0", "private": true, "scripts": {"start": "node server.js"}}\n'



def deploys_under_load(args: argparse.Namespace, base: Path, cache: Path) -> None:
    ws = Workspace(base / "deploys")
    ws.publish(ws.write({"requirements.txt": "flask\n", "app.py": APP.format(text="v0")}))
    sup = Runtime(ws, cache, PAAS_RUNTIME="python")
    try:
        wait_for(lambda: get(sup.port) == (200, "v0"), 300, what="the first revision (venv build)")
        versions = ["v0"]
        latencies: list[float] = []
        with Load(sup.port, args.clients, args.rate, limit=args.deploys * 30 + 30) as load:
            time.sleep(1)  # steady traffic before the first deploy
            for n in range(1, args.deploys + 1):
                text = f"v{n}"
                versions.append(text)
                rev = ws.write({"requirements.txt": "flask\n", "app.py": APP.format(text=text)})
                swapped = time.monotonic()
                ws.publish(rev)
                while True:
                    try:
                        if get(sup.port, timeout=1.0)[1] == text:
                            break
                    except OSError:
                        pass
                    if time.monotonic() - swapped > 60:
                        raise SystemExit(f"deploy {n} did not serve within 60 s")
                    time.sleep(0.01)
                latencies.append(time.monotonic() - swapped)
                time.sleep(0.5)  # traffic on the new revision before the next one
        span = load.records[-1][1] - load.records[0][0]
        rank = {v: i for i, v in enumerate(versions)}
        print(f"deploys under load: {args.deploys} deploys, {len(load.records)} requests in {span:.1f} s "
              f"({len(load.records) / span:.0f} req/s from {args.clients} loopback clients, "
              f"half new-connection, half keep-alive; traffic {sup.state()['traffic']})")
        print(f"  failed requests: {len(load.failures)} (target 0)"
              + (f"; first: {load.failures[:3]}" if load.failures else ""))
        print(f"  answers older than one already seen: {out_of_order(load.records, rank)} (target 0)")
        p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
        print(f"link swap -> new text: p50 {p50:.3f} s  p95 {p95:.3f} s  max {max(latencies):.3f} s "
              f"(target p50 <= 1 s: {'met' if p50 <= 1 else 'MISSED'})")
    finally:
        sup.stop()


def wrk(port: int, seconds: float, keep_alive: bool) -> float:
    argv = ["wrk", "-t1", "-c8", f"-d{seconds:g}s", f"http://127.0.0.1:{port}/"]
    if not keep_alive:
        argv[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        print(f"    (wrk reported: {errors.group(0)})")
    return float(match.group(1)) if match else 0.0


def python_client(port: int, seconds: float, keep_alive: bool, threads: int = 8) -> float:
    count = [0] * threads
    deadline = time.monotonic() + seconds

    def run(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        headers = {} if keep_alive else {"Connection": "close"}
        while time.monotonic() < deadline:
            try:
                conn.request("GET", "/", headers=headers)
                conn.getresponse().read()
                count[i] += 1
            except (OSError, http.client.HTTPException):
                conn.close()
            if not keep_alive:
                conn.close()
        conn.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(count) / seconds


def throughput(args: argparse.Namespace, base: Path, cache: Path) -> dict[str, list[float]]:
    """Ratios (public port / direct) per way of reaching the app: "direct" or "proxied"."""
    client = "wrk (1 thread, 8 connections)" if shutil.which("wrk") else "a Python client (8 threads)"
    measure = wrk if shutil.which("wrk") else python_client
    print(f"public port throughput, {client}, {args.seconds:g} s per run, median of {args.rounds} alternating runs:")
    flask = {"requirements.txt": "flask\n", "app.py": APP.format(text="hi")}
    apps: list[tuple[str, dict[str, str], str, str]] = [
        ("flask, gunicorn app:app (1 sync worker)", flask, "python", "gunicorn app:app"),
        ("flask, gunicorn -k gthread (4 threads)", flask, "python", "gunicorn -k gthread --threads 4 app:app"),
    ]
    if shutil.which("npm"):
        apps.append(("node http server (npm start)",
                     {"package.json": NODE_PACKAGE, "server.js": NODE_APP.format(text="hi")}, "node", "npm start"))
    ratios: dict[str, list[float]] = {"direct": [], "proxied": []}
    for n, (label, files, runtime, command) in enumerate(apps):
        ws = Workspace(base / f"throughput-{n}")
        ws.publish(ws.write(files))
        sup = Runtime(ws, cache, PAAS_RUNTIME=runtime, PAAS_RUN=command)
        direct = None
        try:
            wait_for(lambda port=sup.port: get(port) == (200, "hi"), 300, what=f"the {runtime} app")
            traffic = sup.state()["traffic"]
            # The same app, same command, same environment, on a port of its own.
            direct_port = free_port()
            direct = start_direct(runtime, command, ws, cache, direct_port)
            wait_for(lambda port=direct_port: get(port) == (200, "hi"), 60, what="the app served directly")
            for keep_alive in (False, True):
                # Warm both up (Node's JIT, caches) and alternate which goes first, so
                # neither gains from a trend over the runs.
                measure(direct_port, args.seconds, keep_alive)
                measure(sup.port, args.seconds, keep_alive)
                d, p = [], []
                for n in range(args.rounds):
                    for port, runs in ((direct_port, d), (sup.port, p))[:: 1 if n % 2 == 0 else -1]:
                        runs.append(measure(port, args.seconds, keep_alive))
                ratio = statistics.median(p) / statistics.median(d)
                ratios[traffic].append(ratio)
                mode = "keep-alive    " if keep_alive else "new connection"
                print(f"  {label:40s} {mode} {traffic:7s}  direct {statistics.median(d):6.0f} req/s  "
                      f"public port {statistics.median(p):6.0f} req/s  ratio {ratio:.2f}")
        finally:
            if direct is not None:
                os.killpg(direct.pid, signal.SIGTERM)
                direct.wait(20)
            sup.stop()
    return ratios


def start_direct(runtime: str, command: str, ws: Workspace, cache: Path, port: int) -> subprocess.Popen:
    worktree = ws.root / ".worktrees" / str(ws.published)
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1"}
    if runtime == "python":
        venv = next(p for p in (cache / "venvs").iterdir() if p.is_symlink() and (p / "bin" / "gunicorn").exists())
        env |= {"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}
    return subprocess.Popen(["sh", "-c", command], cwd=worktree, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=20)
    parser.add_argument("--clients", type=int, default=2, help="load clients during the deploys")
    parser.add_argument("--rate", type=float, default=30.0, help="requests/s per load client")
    parser.add_argument("--rounds", type=int, default=5, help="alternating throughput runs per mode")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one throughput run")
    parser.add_argument("--only", choices=("deploys", "throughput"), help="run one part only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="paas-reload-bench-") as tmp:
        base = Path(tmp)
        cache = base / "cache"
        if args.only != "throughput":
            deploys_under_load(args, base, cache)
        if args.only != "deploys":
            ratios = throughput(args, base, cache)
            for traffic, values in ratios.items():
                if values:
                    what = "the app accepting on it" if traffic == "direct" else "through the supervisor's proxy"
                    print(f"public port throughput ratio, {what}: lowest {min(values):.2f}, "
                          f"highest {max(values):.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
