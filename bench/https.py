"""HTTPS and the router: what TLS in the https sidecar costs, what the router costs, and
failed requests while certificates rotate under load.

All on loopback, against the same upstream: a Flask app under gunicorn (2 gthread workers, 4 threads each: it keeps connections alive),
the kind of app the platform runs. Every figure is the median of ``--rounds`` alternating
``wrk`` runs (1 thread, 8 connections, ``--seconds`` each) after a warm-up of each server.

1. TLS: the app over plain HTTP; through the https sidecar (``paas-https``, TLS 1.3, an
   ECDSA P-256 certificate); through Debian's nginx terminating TLS with the same
   certificate and proxying to the same app (1 worker, keep-alive upstream). Keep-alive
   clients give requests/s; clients opening a connection per request give handshakes/s.
   Ratios against nginx and against plain HTTP.
2. Router: the app reached directly and through ``python -m paas.router`` by Host (the
   same process `paas up` starts, with a one-app table); ratio routed / direct (target
   >= 0.8 with keep-alive clients, as for the runtime's public port).
3. Rotation under load: new-connection clients on the sidecar for ``--seconds`` x 4 while a
   new certificate replaces the files every 0.25 s; every socket error or non-2xx answer
   wrk reports counts as failed (target 0), and the sidecar must serve the last one.

    python bench/https.py [--rounds 3] [--seconds 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers import free_port, peer_fingerprint, wait_for  # noqa: E402
from paas_https.certs import fingerprint, self_signed  # noqa: E402

APP = """\
from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return "hi"
"""

NGINX = """\
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    upstream app {{ server 127.0.0.1:{upstream}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {tmp}/tls.crt;
        ssl_certificate_key {tmp}/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
}}
"""


def wrk(url: str, seconds: float, keep_alive: bool, host: str = "") -> tuple[float, int]:
    """Requests/s and failed requests (socket errors + non-2xx) of one wrk run."""
    argv = ["wrk", "-t1", "-c8", f"-d{seconds:g}s", url]
    if not keep_alive:
        argv[1:1] = ["-H", "Connection: close"]
    if host:
        argv[1:1] = ["-H", f"Host: {host}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    failed = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    failed += sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    return (float(rate.group(1)) if rate else 0.0), failed


def alternate(targets: dict[str, tuple[str, str]], rounds: int, seconds: float, keep_alive: bool) -> dict[str, float]:
    """Median req/s per target (url, Host), warmed up, alternating which goes first."""
    for url, host in targets.values():
        wrk(url, 1, keep_alive, host)
    runs: dict[str, list[float]] = {name: [] for name in targets}
    for n in range(rounds):
        for name in list(targets)[:: 1 if n % 2 == 0 else -1]:
            url, host = targets[name]
            runs[name].append(wrk(url, seconds, keep_alive, host)[0])
    return {name: statistics.median(values) for name, values in runs.items()}


def ok(url: str, host: str = "") -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=2, context=ctx) as answer:  # noqa: S310 (loopback)
            return answer.status == 200
    except OSError:
        return False


def served_fingerprint(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        return peer_fingerprint(tls)


def write_pair(tmp: Path) -> bytes:
    """A new certificate and key in tls.crt/tls.key, each replaced at once (as a secret volume)."""
    cert, key = self_signed(["localhost", "127.0.0.1"])
    for name, data in (("tls.key", key), ("tls.crt", cert)):
        (tmp / "next").write_bytes(data)
        (tmp / "next").replace(tmp / name)
    return cert


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/https.py needs wrk (apt-get install wrk)")
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="paas-https-bench-") as name:
        tmp = Path(name)
        (tmp / "app.py").write_text(APP)
        write_pair(tmp)
        up, tls, router_port, nginx_port = free_port(), free_port(), free_port(), free_port()
        try:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "gthread", "--threads", "4", "-b", f"127.0.0.1:{up}", "app:app"],
                cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            procs.append(subprocess.Popen(
                ["paas-https", "--https-port", f"127.0.0.1:{tls}", "--proxy-port", str(up),
                 "--cert-file", str(tmp / "tls.crt"), "--key-file", str(tmp / "tls.key"),
                 "--cert-reload-seconds", "0.1"], stderr=(tmp / "https.log").open("wb")))
            table = tmp / "routes.json"
            table.write_text('{"version": 1, "domain": "localhost", "hosts": {"bench.localhost": "bench"}, "apps": {"bench": '
                             f'{{"address": "127.0.0.1", "port": {up}, "tls": false, "serving": true}}}}}}')
            listener = socket.create_server(("127.0.0.1", router_port), backlog=1024)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "paas.router", "--table", str(table), "--fd", str(listener.fileno())],
                pass_fds=[listener.fileno()], stderr=subprocess.DEVNULL))
            listener.close()
            nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
            if nginx:
                (tmp / "nginx.conf").write_text(NGINX.format(tmp=tmp, upstream=up, port=nginx_port))
                procs.append(subprocess.Popen([nginx, "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
                                              stderr=subprocess.DEVNULL))
            plain, sidecar = f"http://127.0.0.1:{up}/", f"https://127.0.0.1:{tls}/"
            routed, by_nginx = f"http://127.0.0.1:{router_port}/", f"https://127.0.0.1:{nginx_port}/"
            wait_for(lambda: ok(plain) and ok(sidecar) and ok(routed, "bench.localhost")
                     and (not nginx or ok(by_nginx)), 60, what="the servers")

            print(f"upstream: Flask under gunicorn (2 gthread workers x 4 threads); wrk 1 thread, 8 connections, "
                  f"{args.seconds:g} s per run, median of {args.rounds} alternating runs")
            targets = {"plain": (plain, ""), "sidecar": (sidecar, "")} | ({"nginx": (by_nginx, "")} if nginx else {})
            for keep_alive in (True, False):
                got = alternate(targets, args.rounds, args.seconds, keep_alive)
                unit = "req/s" if keep_alive else "handshakes/s"
                line = f"  TLS, {'keep-alive    ' if keep_alive else 'new connection'}: plain HTTP {got['plain']:6.0f} " \
                       f"{unit}, https sidecar {got['sidecar']:6.0f}"
                if nginx:
                    line += f", nginx TLS {got['nginx']:6.0f}; sidecar/nginx {got['sidecar'] / got['nginx']:.2f}"
                print(line + f", sidecar/plain {got['sidecar'] / got['plain']:.2f}")
            for keep_alive in (True, False):
                got = alternate({"direct": (plain, ""), "router": (routed, "bench.localhost")},
                                args.rounds, args.seconds, keep_alive)
                ratio = got["router"] / got["direct"]
                target = f" (target >= 0.8: {'met' if ratio >= 0.8 else 'MISSED'})" if keep_alive else ""
                print(f"  router, {'keep-alive    ' if keep_alive else 'new connection'}: direct {got['direct']:6.0f} "
                      f"req/s, by Host through the router {got['router']:6.0f}; ratio {ratio:.2f}{target}")

            stop, rotations, last = threading.Event(), [0], [b""]

            def rotate() -> None:
                while not stop.wait(0.25):
                    last[0] = write_pair(tmp)
                    rotations[0] += 1

            rotator = threading.Thread(target=rotate)
            rotator.start()
            rate, failed = wrk(sidecar, args.seconds * 4, False)
            stop.set()
            rotator.join()
            wait_for(lambda: served_fingerprint(tls) == fingerprint(last[0]), 10, what="the last certificate")
            print(f"  rotation under load: {rotations[0]} certificates in {args.seconds * 4:g} s while "
                  f"{rate:.0f} new connections/s: failed requests {failed} (target 0); the last one is served")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
