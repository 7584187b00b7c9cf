"""The local backend's pods: processes, stopped whatever the kubelet thread does meanwhile."""

from __future__ import annotations

import time

from helpers import wait_for
from paas.backends.local import LocalBackend
from paas.podmodel import APP, Container, PodSpec


def test_a_pod_stops_though_the_kubelet_reaps_its_process_meanwhile(tmp_path, monkeypatch):
    """The kubelet thread reaps a process that exits (`proc = None`) while `_stop` waits for
    it: `paas restart --hard` and `DELETE /apps/<name>` once answered 500 from that race."""
    backend = LocalBackend(tmp_path)
    try:
        backend.apply(PodSpec("a", (Container("main", APP, "img", ("sleep", "60"), {}),)))
        process = backend._pods["a"].processes[0]
        proc = wait_for(lambda: process.proc, 10, what="the process started")
        exited = proc.wait

        def exited_then_reaped(timeout: float | None = None) -> int:
            code = exited(timeout)
            process.reap(time.time())  # as the kubelet thread does, between `_stop`'s two waits
            return code

        monkeypatch.setattr(proc, "wait", exited_then_reaped)
        backend.remove("a")
        assert proc.returncode is not None and not backend.pods()
    finally:
        backend.close()
