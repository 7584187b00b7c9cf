"""Every process `paas up` starts is supervised: the router, the API and the local pod host
each come back when killed, their deaths and restarts are events, `/healthz` names a part
that is down (with a 503), and the apps keep serving while the API's worker restarts — the
pods belong to the pod host, not to the worker."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from helpers import ControlPlane, Load, get_text, processes_under, stdlib_app, stdlib_manifest, wait_for
from paas.server import create_app
from paas.supervisor import Part, Supervisor, read_parts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cp(tmp_path_factory, deps_cache):
    base = tmp_path_factory.mktemp("supervised")
    cp = ControlPlane(base / "data", base / "cli-config", cache=deps_cache).start()
    cp.create(stdlib_manifest("steady"))
    cp.push(stdlib_app(base / "steady", "steady"), "steady")
    yield cp
    cp.stop()
    wait_for(lambda: not processes_under(cp.data_dir / "pods"), 15, what="no pod process left")


def health(cp: ControlPlane) -> dict:
    return requests.get(f"{cp.url}/api/v1/healthz", timeout=5).json()


def part_pid(cp: ControlPlane, name: str) -> int:
    return read_parts(cp.data_dir)["parts"][name]["pid"]


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_killed_router_is_back_at_once_and_only_the_request_it_held_fails(cp):
    before = health(cp)["parts"]["router"]["restarts"]
    router = part_pid(cp, "router")
    with Load(f"http://127.0.0.1:{cp.router_port}/", host="steady.localhost") as load:
        wait_for(lambda: load.served >= 5, 10, what="requests served through the router")
        killed_at = time.monotonic()
        os.kill(router, signal.SIGKILL)
        wait_for(lambda: health(cp)["parts"]["router"]["restarts"] == before + 1, 10, what="the router restarted")
        served = load.served
        wait_for(lambda: load.served >= served + 5, 10, what="requests served by the new router")
    # Its listening sockets stay open in `paas up`: what arrived meanwhile waited in the queue.
    # The one request the router was proxying when SIGKILL came (one client, one at a time)
    # can't be saved; every request sent after the kill was served.
    assert len(load.failures) <= 1 and all(sent <= killed_at for sent in load.failed_at), load.failures
    state = health(cp)
    assert state["status"] == "ok" and state["parts"]["router"]["last_exit"] == "was killed by SIGKILL"
    assert state["parts"]["router"]["state"] == "up" and part_pid(cp, "router") != router
    messages = [e["message"] for e in state["events"] if e["part"] == "router"]
    assert "the router was killed by SIGKILL; restarting it in 0.2 s" in messages
    assert f"the router was restarted (restart {before + 1})" in messages


def test_a_killed_api_worker_leaves_every_app_serving(cp):
    master = part_pid(cp, "API")
    (worker,) = children(master)
    runtime = next(c for c in cp.api("GET", "/apps/steady").json()["containers"] if c["name"] == "runtime")
    app_url = cp.api("GET", "/apps/steady").json()["url"]
    with Load(app_url) as direct, Load(f"http://127.0.0.1:{cp.router_port}/", host="steady.localhost") as routed:
        wait_for(lambda: direct.served >= 5 and routed.served >= 5, 10, what="requests served")
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: children(master) and children(master) != [worker], 30, what="gunicorn's new worker")
        wait_for(lambda: health(cp)["reconciled"] > 2, 30, what="the new worker reconciling")
        served = direct.served
        wait_for(lambda: direct.served >= served + 5, 10, what="more requests served")
    assert direct.failures == [] and routed.failures == []
    # The pod went on as it was: the same runtime process, never restarted.
    now = next(c for c in cp.api("GET", "/apps/steady").json()["containers"] if c["name"] == "runtime")
    assert (now["id"], now["restarts"]) == (runtime["id"], runtime["restarts"])


def test_a_killed_pod_host_comes_back_and_so_do_its_pods(cp):
    pods = part_pid(cp, "pod host")
    old = set(processes_under(cp.data_dir / "pods" / "steady"))
    assert old
    os.kill(pods, signal.SIGKILL)
    wait_for(lambda: health(cp)["parts"]["pod host"]["restarts"] >= 1, 10, what="the pod host restarted")
    url = cp.api("GET", "/apps/steady").json()["url"]
    wait_for(lambda: get_text(url) == "steady", 60, what="the app serving again")
    # What ran in the killed pod host's pods went with it (PR_SET_PDEATHSIG), none left over.
    wait_for(lambda: not old & set(processes_under(cp.data_dir / "pods" / "steady")), 15, what="the old pods gone")
    messages = [e["message"] for e in health(cp)["events"] if e["part"] == "pod host"]
    assert "the pod host was killed by SIGKILL; restarting it in 0.2 s" in messages


def test_a_part_that_keeps_dying_backs_off_and_healthz_names_it(tmp_path):
    """A part exiting at once is restarted after 0.2 s, then 0.4 s, 0.8 s…; while it waits,
    `/healthz` answers 503 naming it, how it exited and since when."""
    data = tmp_path / "data"
    said: list[str] = []
    supervisor = Supervisor(data, said.append)
    supervisor.parts.append(Part("flaky part", [sys.executable, "-c", "raise SystemExit(3)"]))
    supervisor.parts[0].start()
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len([s for s in said if "restarting it in" in s]) >= 4, 20, what="four exits")
        app = create_app({"data_dir": data, "token": "t"}, start=False)
        answer = app.test_client().get("/api/v1/healthz")
        assert answer.status_code == 503, answer.json
        assert answer.json["status"] == "degraded"
        assert answer.json["parts"]["flaky part"]["last_exit"] == "exited with code 3"
        (down,) = answer.json["down"]
        assert down.startswith("flaky part: down since ") and down.endswith("(exited with code 3)")
        app.extensions["paas"].close()
    finally:
        supervisor.stopping.set()
        thread.join(30)
    delays = [s.split("restarting it in ")[1] for s in said if "restarting it in" in s]
    assert delays[:4] == ["0.2 s", "0.4 s", "0.8 s", "1.6 s"]
    assert said[0] == "paas: the flaky part exited with code 3; restarting it in 0.2 s"
    assert read_parts(data) is None  # a stopped supervisor leaves no state behind
