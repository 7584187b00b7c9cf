"""The router's table from the control plane's side (`paas.routes`: which host name is which
app, where it is reached, whether it serves and speaks TLS) and from the router's
(`paas.router.table`: the file read into the table it routes by). Data in, table out."""

from __future__ import annotations

import json

from paas import routes
from paas.appspec import Platform, resolve
from paas.backends.base import ContainerStatus, PodStatus
from paas.manifest import parse
from paas.router.table import Table, TableFile
from paas.router.table import parse as read_table
from paas.store import App

PLATFORM = Platform("http://cp")


def spec(name: str, text: str = "", port: int = 8100):
    return resolve(App(name, parse(f"name: {name}\n{text}"), port, "t", 0.0), PLATFORM)


def pod(name: str, serving: str | None = "abc", state: str = "running", address: str | None = None) -> PodStatus:
    containers = [ContainerStatus("git-sync", state, role="sync"), ContainerStatus("runtime", state, role="runtime")]
    return PodStatus(name, "d", containers, {"runtime": {"serving": serving}}, address=address)


def test_an_app_is_routed_at_its_port_and_serves_only_when_its_pod_runs_and_its_runtime_serves():
    specs = [spec("a", port=8101), spec("b", "sidecars: [https]\n", port=8102), spec("c", port=8103), spec("d", port=8104)]
    pods = {"a": pod("a"), "b": pod("b"), "c": pod("c", serving=None), "d": pod("d", state="restarting")}
    table = routes.build(specs, pods, "127.0.0.1", "localhost")
    assert table["apps"] == {
        "a": {"address": "127.0.0.1", "port": 8101, "tls": False, "serving": True},
        "b": {"address": "127.0.0.1", "port": 8102, "tls": True, "serving": True},
        "c": {"address": "127.0.0.1", "port": 8103, "tls": False, "serving": False},
        "d": {"address": "127.0.0.1", "port": 8104, "tls": False, "serving": False},
    }
    assert routes.build([spec("e")], {}, "127.0.0.1", "localhost")["apps"]["e"]["serving"] is False  # no pod yet


def test_a_pod_reached_at_an_address_of_its_own_is_routed_there():
    """A control plane in a container reaches a Docker pod at its address on the pod's
    network: the ports published on the host are not the container's loopback."""
    table = routes.build([spec("a"), spec("b")], {"a": pod("a", address="172.18.0.2"), "b": pod("b")}, "10.0.0.5", "localhost")
    assert (table["apps"]["a"]["address"], table["apps"]["b"]["address"]) == ("172.18.0.2", "10.0.0.5")


def test_an_apps_own_name_is_its_own_and_of_other_names_the_first_claim_keeps_it():
    specs = [spec("a", "hosts: [shop.example.com, b.localhost]\n"), spec("b"), spec("c", "hosts: [shop.example.com]\n")]
    table = routes.build(specs, {}, "127.0.0.1", "localhost")
    assert table["hosts"] == {"a.localhost": "a", "b.localhost": "b", "c.localhost": "c", "shop.example.com": "a"}
    assert (table["version"], table["domain"]) == (1, "localhost")


def test_the_table_is_written_whole_and_only_when_it_changed(tmp_path):
    path = routes.table_path(tmp_path)
    writer = routes.TableWriter(path)
    table = routes.build([spec("a")], {"a": pod("a")}, "127.0.0.1", "localhost")
    assert writer.write(table) and json.loads(path.read_text()) == table
    stamp = path.stat().st_mtime_ns
    assert not writer.write(json.loads(json.dumps(table))) and path.stat().st_mtime_ns == stamp
    assert writer.write(routes.build([spec("a")], {}, "127.0.0.1", "localhost"))
    assert sorted(p.name for p in path.parent.iterdir()) == [routes.TABLE_FILE]  # no temporary file left


def test_the_router_reads_the_table_finds_hosts_as_they_are_written_and_keeps_what_did_not_move():
    data = routes.build([spec("a", "hosts: [www.example.com]\n", port=8101), spec("b", port=8102)],
                        {"a": pod("a")}, "127.0.0.1", "localhost")
    data["hosts"]["gone.localhost"] = "gone"  # a name of an app the table doesn't hold routes nowhere
    first = read_table(data, Table())
    assert first.find("A.localhost.").name == "a" and first.find("www.example.com").backend.port == 8101
    assert first.find("gone.localhost") is None and first.find("nope.localhost") is None
    assert first.find("a.localhost").serving and not first.find("b.localhost").serving
    data["apps"]["b"] = data["apps"]["b"] | {"port": 8202}
    second = read_table(data, first)
    assert second.find("a.localhost").backend is first.find("a.localhost").backend  # its connection counts go on
    assert second.find("b.localhost").backend is not first.find("b.localhost").backend


def test_an_unreadable_table_file_leaves_the_table_as_it_was(tmp_path):
    path = tmp_path / "routes.json"
    file = TableFile(path)
    assert not file.refresh()  # no file yet
    path.write_text(json.dumps(routes.build([spec("a")], {}, "127.0.0.1", "localhost")))
    assert file.refresh() and file.table.find("a.localhost") is not None and not file.refresh()
    for broken in ("{", json.dumps({"apps": {"a": {"port": "x"}}, "hosts": {}}), json.dumps([])):
        path.write_text(broken)
        assert not file.refresh() and file.table.find("a.localhost") is not None
