"""Changing a running app: `paas config set` -> the app serving the new value, by reload mode,
and `paas apply` / `paas restart`, each under steady load.

Starts `paas up` (local backend) on a fresh data directory and deploys two apps that say what
they run with: one with the default `config: {reload: restart}` (the runtime starts a new
instance with the new environment beside the old), one with `sidecars: [config]` and
`config: {reload: signal}` (the config sidecar rewrites config.json and sends SIGHUP to the
app's process). For each it sets a new value N times while a client sends ~60 requests/s,
and times from the API call starting to the first answer carrying the value (polled every
10 ms): p50/p95, and the failed requests of the load (target 0). Then it applies an env change
and restarts N times under the same load (target 0 failed), and times how long the app
goes unanswered across `paas restart --hard` (a new pod).

    python bench/lifecycle.py [--changes 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from stats import percentile  # noqa: E402

from helpers import ControlPlane, Load, reloading_app, seen, stdlib_manifest, wait_for  # noqa: E402

MODES = {"restart": "", "signal": "sidecars: [config]\nconfig: {reload: signal}\n"}


def until_seen(change: Callable[[], None], check: Callable[[dict], bool], url: str) -> float:
    """Seconds from ``change`` starting (in a thread: the API answers once live) to ``url``
    answering what ``check`` accepts."""
    started = time.monotonic()
    worker = threading.Thread(target=change)
    worker.start()
    wait_for(lambda: check(seen(url)), 60, 0.01, "the new value served")
    took = time.monotonic() - started
    worker.join()
    return took


def downtime(action: Callable[[], None], url: str) -> float:
    """Seconds ``url`` went unanswered (polled every 10 ms) while ``action`` ran, and after
    it until the app answers again."""
    worker = threading.Thread(target=action)
    worker.start()
    unanswered = []
    while True:
        alive = worker.is_alive()
        if seen(url):
            if not alive:
                break
        else:
            unanswered.append(time.monotonic())
        time.sleep(0.01)
    worker.join()
    return unanswered[-1] - unanswered[0] + 0.01 if unanswered else 0.0


def timed(action: Callable[[], None]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def ok(response) -> None:  # noqa: ANN001 - a requests.Response
    assert response.status_code < 300, response.text


def ok_cli(done) -> None:  # noqa: ANN001 - a subprocess.CompletedProcess
    assert done.returncode == 0, done.stderr


def figures(label: str, times: list[float], failures: list[str], requests: int) -> None:
    print(f"{label}: p50 {statistics.median(times):.3f} s  p95 {percentile(times, 0.95):.3f} s  "
          f"failed requests {len(failures)} of {requests} (target 0: {'met' if not failures else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="paas-bench-") as tmp:
        base = Path(tmp)
        cp = ControlPlane(base / "data", base / "cli-config").start()
        try:
            urls = {}
            for mode, extra in MODES.items():
                name = f"cfg-{mode}"
                urls[mode] = cp.create(stdlib_manifest(name) + extra)["url"]
                cp.push(reloading_app(base / name), name)
                wait_for(lambda mode=mode: seen(urls[mode]).get("text") == "one", 120, what=f"{name} serving")
            for mode, url in urls.items():
                key = "env" if mode == "restart" else "file"
                times = []
                with Load(url, rate=60) as load:
                    for n in range(args.changes):
                        value = f"{mode}-{n}"
                        times.append(until_seen(
                            lambda value=value, mode=mode: ok(cp.api("PUT", f"/apps/cfg-{mode}/config",
                                                                    json={"GREETING": value})),
                            lambda s, value=value, key=key: s.get(key) == value, url))
                figures(f"config set -> new value served ({mode})", times, load.failures,
                        len(load.bodies) + len(load.failures))
            url = urls["restart"]
            applied, restarted = [], []
            manifest = base / "apply.yaml"
            with Load(url, rate=60) as load:
                for n in range(args.changes):
                    manifest.write_text(stdlib_manifest("cfg-restart") + f"env: {{APPLIED: '{n}'}}\n")
                    applied.append(timed(lambda: ok_cli(cp.cli("apply", "-f", str(manifest)))))
                for _ in range(args.changes):
                    restarted.append(timed(lambda: ok_cli(cp.cli("restart", "cfg-restart"))))
            requests = len(load.bodies) + len(load.failures)
            figures("paas apply (env change) until it returns live", applied, load.failures, requests)
            print(f"paas restart until it returns live: p50 {statistics.median(restarted):.3f} s  "
                  f"p95 {percentile(restarted, 0.95):.3f} s  (same load as apply)")
            hard = [downtime(lambda: ok_cli(cp.cli("restart", "--hard", "cfg-restart")), url)
                    for _ in range(3)]
            print(f"paas restart --hard (a new pod): unanswered for p50 {statistics.median(hard):.2f} s, "
                  f"max {max(hard):.2f} s")
        finally:
            for mode in MODES:
                cp.api("DELETE", f"/apps/cfg-{mode}")
            cp.stop()


if __name__ == "__main__":
    main()
