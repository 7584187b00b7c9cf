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
2. Router, by the runtime's bench method (``bench/reload.py``): wrk, 1 thread, 8
   connections, median of ``--rounds`` alternating runs after a warm-up, new-connection
   and keep-alive clients, each app reached directly and through ``python -m paas.router``
   by Host (the same process `paas up` starts); ratio routed / direct, target >= 0.8 for
   the app the runtime's bench runs through its proxy (Flask under ``gunicorn -k gthread
   --threads 4``). Also measured, with no target: the TLS section's two-worker upstream,
   which fills both cores itself, and a Node.js http server if ``node`` is installed (a
   fast app, where any proxy's cost shows). References in the same runs: Debian's nginx
   routing by Host to the same apps (an HTTP proxy: 1 worker, keep-alive upstream), and,
   with ``libnginx-mod-stream`` installed, nginx splicing bytes from a port of each app's
   own to it: the router's design (one upstream connection per client), in C.
3. Rotation under load: new-connection clients on the sidecar for ``--seconds`` x 4 while a
   new certificate replaces the files every 0.25 s; every socket error or non-2xx answer
   wrk reports counts as failed (target 0), and the sidecar must serve the last one.

    python bench/https.py [--rounds 5] [--seconds 2] [--section router ...]
"""

from __future__ import annotations

import argparse
import json
import os
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

from reload import NODE_APP  # noqa: E402  (bench/reload.py's Node.js app)

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


def alternate(
    targets: dict[str, tuple[str, str]], rounds: int, seconds: float, keep_alive: bool
) -> dict[str, float]:
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


def gunicorn(workers: int, port: int | str) -> list[str]:
    """The bench's Flask app under gunicorn's gthread worker (4 threads each) on 127.0.0.1:``port``."""
    argv = ["-m", "gunicorn", "-w", str(workers), "-k", "gthread", "--threads", "4", "-b", f"127.0.0.1:{port}", "app:app"]
    return [sys.executable, *argv]


#: The router section's apps: label, command (run in the bench directory, PORT set), and
#: whether the target applies (the app the runtime's bench sends through its proxy).
ROUTED_APPS = [
    ("flask, gunicorn -k gthread (4 threads)", gunicorn(1, "{port}"), True),
    ("flask, gunicorn 2 gthread workers", gunicorn(2, "{port}"), False),
    ("node http server", ["node", "server.js"], False),
]

NGINX_ROUTER = """\
{load}worker_processes 1;
pid {tmp}/nginx-router.pid;
error_log {tmp}/nginx-router-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
{servers}
}}
{streams}"""
#: Debian's libnginx-mod-stream: nginx splicing bytes by port, the router's design in C.
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
NGINX_STREAM = "    server {{ listen 127.0.0.1:{port}; proxy_pass 127.0.0.1:{upstream}; }}\n"
NGINX_VHOST = """\
    upstream app{n} {{ server 127.0.0.1:{upstream}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        server_name {host};
        location / {{ proxy_pass http://app{n}; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; }}
    }}
"""


def start(procs: list[subprocess.Popen], argv: list[str], **kwargs: object) -> subprocess.Popen:
    proc = subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload]
    procs.append(proc)
    return proc


def tls_figures(args: argparse.Namespace, plain: str, sidecar: str, by_nginx: str | None) -> None:
    targets = {"plain": (plain, ""), "sidecar": (sidecar, "")} | (
        {"nginx": (by_nginx, "")} if by_nginx else {}
    )
    for keep_alive in (True, False):
        got = alternate(targets, args.rounds, args.seconds, keep_alive)
        unit = "req/s" if keep_alive else "handshakes/s"
        line = (
            f"  TLS, {'keep-alive    ' if keep_alive else 'new connection'}: plain HTTP {got['plain']:6.0f} "
            f"{unit}, https sidecar {got['sidecar']:6.0f}"
        )
        if by_nginx:
            line += f", nginx TLS {got['nginx']:6.0f}; sidecar/nginx {got['sidecar'] / got['nginx']:.2f}"
        print(line + f", sidecar/plain {got['sidecar'] / got['plain']:.2f}")


def router_figures(
    args: argparse.Namespace, tmp: Path, procs: list[subprocess.Popen], nginx: str | None
) -> None:
    """Each of ROUTED_APPS directly, through the router and through nginx (the references)."""
    apps = [(label, argv, target) for label, argv, target in ROUTED_APPS if shutil.which(argv[0])]
    ports = [free_port() for _ in apps]
    (tmp / "server.js").write_text(NODE_APP.format(text="hi"))
    for (_, argv, _), port in zip(apps, ports, strict=True):
        start(
            procs,
            [a.format(port=port) for a in argv],
            cwd=tmp,
            env=os.environ | {"HOST": "127.0.0.1", "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    hosts = [f"app{n}.localhost" for n in range(len(apps))]
    table = {
        "version": 1,
        "domain": "localhost",
        "hosts": {host: host for host in hosts},
        "apps": {
            host: {"address": "127.0.0.1", "port": port, "tls": False, "serving": True}
            for host, port in zip(hosts, ports, strict=True)
        },
    }
    (tmp / "routes.json").write_text(json.dumps(table))
    router_port, nginx_port = free_port(), free_port()
    listener = socket.create_server(("127.0.0.1", router_port), backlog=1024)
    start(
        procs,
        [
            sys.executable,
            "-m",
            "paas.router",
            "--table",
            str(tmp / "routes.json"),
            "--fd",
            str(listener.fileno()),
        ],
        pass_fds=[listener.fileno()],
        stderr=subprocess.DEVNULL,
    )
    listener.close()
    # References per app: nginx by Host (an HTTP proxy, keep-alive upstream) and, with the
    # stream module, nginx splicing bytes from a port of the app's own (as the router does).
    references: dict[str, list[tuple[str, str]]] = {}
    if nginx:
        stream_ports = [free_port() for _ in apps] if STREAM_MODULE.exists() else []
        servers = "".join(
            NGINX_VHOST.format(n=n, upstream=port, port=nginx_port, host=host)
            for n, (host, port) in enumerate(zip(hosts, ports, strict=True))
        )
        streams = "".join(NGINX_STREAM.format(port=sp, upstream=up) for sp, up in zip(stream_ports, ports, strict=False))  # [] without the module
        (tmp / "nginx-router.conf").write_text(
            NGINX_ROUTER.format(
                tmp=tmp,
                servers=servers,
                load=f"load_module {STREAM_MODULE};\n" if streams else "",
                streams=f"stream {{\n{streams}}}\n" if streams else "",
            )
        )
        start(
            procs,
            [nginx, "-c", str(tmp / "nginx-router.conf"), "-g", "daemon off;"],
            stderr=subprocess.DEVNULL,
        )
        references["nginx by Host"] = [(f"http://127.0.0.1:{nginx_port}/", host) for host in hosts]
        if stream_ports:
            references["nginx stream"] = [(f"http://127.0.0.1:{sp}/", host) for sp, host in zip(stream_ports, hosts, strict=True)]
    routed = f"http://127.0.0.1:{router_port}/"
    for n, (host, port) in enumerate(zip(hosts, ports, strict=True)):
        wait_for(
            lambda n=n, host=host, port=port: (
                ok(f"http://127.0.0.1:{port}/")
                and ok(routed, host)
                and all(ok(*urls[n]) for urls in references.values())
            ),
            60,
            what=f"the app at {host}",
        )
    print(
        f"  router by Host (the runtime's bench method: median of {args.rounds} alternating runs); "
        f"references: {', '.join(references) or 'none (no nginx)'}:"
    )
    verdicts = []
    for n, ((label, _, target), host, port) in enumerate(zip(apps, hosts, ports, strict=True)):
        for keep_alive in (False, True):
            targets = {"direct": (f"http://127.0.0.1:{port}/", host), "router": (routed, host)}
            targets |= {name: urls[n] for name, urls in references.items()}
            got = alternate(targets, args.rounds, args.seconds, keep_alive)
            ratio = got["router"] / got["direct"]
            if target:
                verdicts.append(ratio)
            line = (
                f"    {label:38s} {'keep-alive    ' if keep_alive else 'new connection'} direct {got['direct']:6.0f} "
                f"req/s, router {got['router']:6.0f} (ratio {ratio:.2f})"
            )
            for name in references:
                line += f", {name} {got[name]:6.0f} ({got[name] / got['direct']:.2f})"
            print(line)
    print(
        f"  router / direct for the runtime bench's app: lowest {min(verdicts):.2f}, highest {max(verdicts):.2f} "
        f"(target >= 0.8: {'met' if min(verdicts) >= 0.8 else 'MISSED'})"
    )


def rotation_figures(args: argparse.Namespace, tmp: Path, tls: int, sidecar: str) -> None:
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
    print(
        f"  rotation under load: {rotations[0]} certificates in {args.seconds * 4:g} s while "
        f"{rate:.0f} new connections/s: failed requests {failed} (target 0); the last one is served"
    )


SECTIONS = ["tls", "router", "rotation"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--section", action="append", choices=SECTIONS,
                        help="run only this section (repeatable; default: all)")
    args = parser.parse_args()
    sections = args.section or SECTIONS
    if not shutil.which("wrk"):
        sys.exit("bench/https.py needs wrk (apt-get install wrk)")
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="paas-https-bench-") as name:
        tmp = Path(name)
        (tmp / "app.py").write_text(APP)
        write_pair(tmp)
        up, tls, nginx_port = free_port(), free_port(), free_port()
        try:
            start(procs, gunicorn(2, up), cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            start(
                procs,
                [
                    "paas-https",
                    "--https-port",
                    f"127.0.0.1:{tls}",
                    "--proxy-port",
                    str(up),
                    "--cert-file",
                    str(tmp / "tls.crt"),
                    "--key-file",
                    str(tmp / "tls.key"),
                    "--cert-reload-seconds",
                    "0.1",
                ],
                stderr=(tmp / "https.log").open("wb"),
            )
            nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
            if nginx:
                (tmp / "nginx.conf").write_text(NGINX.format(tmp=tmp, upstream=up, port=nginx_port))
                start(
                    procs,
                    [nginx, "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
                    stderr=subprocess.DEVNULL,
                )
            plain, sidecar = f"http://127.0.0.1:{up}/", f"https://127.0.0.1:{tls}/"
            by_nginx = f"https://127.0.0.1:{nginx_port}/" if nginx else None
            wait_for(
                lambda: ok(plain) and ok(sidecar) and (not by_nginx or ok(by_nginx)), 60, what="the servers"
            )
            print(
                f"upstream: Flask under gunicorn (2 gthread workers x 4 threads); wrk 1 thread, 8 connections, "
                f"{args.seconds:g} s per run, median of {args.rounds} alternating runs"
            )
            if "tls" in sections:
                tls_figures(args, plain, sidecar, by_nginx)
            if "router" in sections:
                router_figures(args, tmp, procs, nginx)
            if "rotation" in sections:
                rotation_figures(args, tmp, tls, sidecar)
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
