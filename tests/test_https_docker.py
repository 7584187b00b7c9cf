"""The https sidecar image as the seed's demo runs it: an unchanged plain-HTTP service in one
`docker run`, the sidecar joining its network namespace in a second, `curl -k` over TLS."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from helpers import wait_for
from paas.backends.docker import images

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LEGACY = "import http.server as h\n" \
         "class H(h.BaseHTTPRequestHandler):\n" \
         "    def do_GET(self):\n" \
         "        body = ('legacy saw ' + self.headers.get('X-Forwarded-Proto', '-')).encode()\n" \
         "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n" \
         "        self.wfile.write(body)\n" \
         "h.HTTPServer(('127.0.0.1', 8000), H).serve_forever()\n"


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def test_two_docker_runs_and_curl_k(pod_images):
    image = next(i for i in images.POD_IMAGES if i.name == "https").tag
    name = f"paas-test-legacy-{uuid.uuid4().hex[:8]}"
    # Any image serving HTTP on 8000 will do; the sidecar's own image has a python3 to be one.
    _docker("run", "-d", "--name", name, "-p", "127.0.0.1::8443", "--entrypoint", "python3", image, "-c", LEGACY)
    try:
        _docker("run", "-d", "--name", f"{name}-https", "--network", f"container:{name}", "-e", "PROXY_PORT=8000", image)
        port = _docker("port", name, "8443/tcp").splitlines()[0].rsplit(":", 1)[1]

        def curl(*flags: str) -> subprocess.CompletedProcess:
            return subprocess.run(["curl", "-sS", "--max-time", "5", *flags, f"https://127.0.0.1:{port}/"],
                                  capture_output=True, text=True, timeout=30)

        wait_for(lambda: curl("-k").returncode == 0, 60, what="the sidecar answering over TLS")
        assert curl("-k").stdout == "legacy saw https"
        refused = curl()  # without -k: a self-signed certificate is not trusted
        assert refused.returncode == 60, refused.stderr
        logs = subprocess.run(["docker", "logs", f"{name}-https"], capture_output=True, text=True, timeout=30)
        assert "SHA-256 fingerprint" in logs.stderr  # what to compare the certificate curl was shown with
    finally:
        subprocess.run(["docker", "rm", "-f", name, f"{name}-https"], capture_output=True, timeout=60)
