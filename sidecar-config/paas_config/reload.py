"""Telling the app its config changed, per `config.reload`:

- `restart`: nothing to do here — the runtime starts a new instance with the new variables
  beside the old one and switches when it is healthy;
- `signal`: send the signal (default SIGHUP) to the app's main process, found through the
  runtime's status endpoint (its serving instance's `main_pid`) in the PID namespace this
  sidecar shares with it: the process stays (gunicorn reloads its workers on HUP);
- `webhook`: `POST` a path on the app's own port, retried with backoff until it answers
  below 400 (or a newer version supersedes it), as configmap-reload does;
- `none`: only the files change.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import urllib.error
import urllib.request

from paas_config import credential

log = logging.getLogger("paas_config")
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0


class ReloadFailed(Exception):
    pass


def send_signal(runtime: str, name: str, secret: bytes | None = None) -> int | None:
    """Signal the serving instance's main process; its pid (None if nothing serves: the next
    instance starts with the new config anyway). ``secret``: the pod's credential, which the
    runtime's status endpoint asks for. Raises ReloadFailed."""
    request = urllib.request.Request(f"http://{runtime}/status", headers=credential.header(secret))
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status = json.loads(response.read())
    except (OSError, ValueError) as e:
        raise ReloadFailed(f"the runtime's status endpoint {runtime} did not answer ({e})") from None
    serving = [i for i in status.get("instances", []) if i.get("state") == "serving"]
    if not serving:
        return None
    pid = int(serving[0].get("main_pid") or serving[0]["pid"])
    try:
        os.kill(pid, signal.Signals[name])
    except (ProcessLookupError, PermissionError) as e:
        raise ReloadFailed(f"cannot signal pid {pid}: {e.strerror}") from None
    return pid


def call_webhook(app: str, path: str, version: int) -> int:
    """POST the webhook once; its status. Raises ReloadFailed below 200 or from 400 up."""
    request = urllib.request.Request(f"http://{app}{path}", data=b"", method="POST",
                                     headers={"X-Paas-Config-Version": str(version)})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        raise ReloadFailed(f"the webhook answered {e.code}") from None
    except (OSError, ValueError) as e:
        raise ReloadFailed(f"the webhook could not be called ({e})") from None


class Retrier:
    """Runs one reload at a time in a thread, with backoff; a newer one supersedes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self.error: str | None = None
        self.done_version: int | None = None

    def start(self, version: int, attempt) -> None:  # attempt: () -> str (what was done)
        with self._lock:
            self._generation += 1
            generation = self._generation
        threading.Thread(target=self._run, args=(generation, version, attempt), daemon=True).start()

    def _run(self, generation: int, version: int, attempt) -> None:
        delay = BACKOFF_FIRST
        stop = threading.Event()
        while self._generation == generation:
            try:
                done = attempt()
            except ReloadFailed as e:
                self.error = str(e)
                log.warning("config v%d: %s; retrying in %g s", version, e, delay)
                stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            self.error, self.done_version = None, version
            log.info("config v%d: %s", version, done)
            return
