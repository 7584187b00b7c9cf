"""The runtime's live settings (`PUT /settings`, `PAAS_SETTINGS`, `PAAS_SETTINGS_FILE`), driven
as the control plane drives them: a change of how the app runs is a new instance beside the
old one; config the app reloads itself changes no process; withheld config values (left out
of the environment `docker inspect` shows) hold the build until they are pushed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from helpers import wait_for
from runtime_harness import Load, Runtime, Workspace, try_get

pytestmark = pytest.mark.slow

SERVER = """import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"greeting": os.environ.get("GREETING", "-"), "pid": os.getpid()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""


def settings(version: str, issued: float | None = None, **changes) -> dict:
    """A settings document as the control plane sends it."""
    return {"run": "python server.py", "healthcheck": "/", "health_timeout": 15.0, "env": {}, "config": {},
            "config_version": 0, "config_reload": "restart", "generation": 0, "version": version,
            "issued": time.time() if issued is None else issued} | changes


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "workspace")


@pytest.fixture
def start(workspace: Workspace, tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    started: list[Runtime] = []

    def start(first: dict, **env: str) -> Runtime:
        runtime = Runtime(workspace, tmp_path / "cache", PAAS_RUNTIME="python", PAAS_SETTINGS=json.dumps(first),
                          PAAS_SETTINGS_FILE=str(workspace.root / "settings.json"), **env)
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.stop()
        print(runtime.log())  # shown by pytest when the test failed


def answer(runtime: Runtime) -> dict:
    got = try_get(runtime.port)
    return json.loads(got[1]) if got and got[0] == 200 else {}


def put(runtime: Runtime, body) -> requests.Response:
    return requests.put(runtime.status_url.replace("/status", "/settings"), json=body, headers=runtime.headers, timeout=5)


def serving(runtime: Runtime, greeting: str) -> dict:
    return wait_for(lambda: (a := answer(runtime)).get("greeting") == greeting and a, 60, 0.05, f"{greeting!r} served")


def test_a_change_of_environment_is_a_new_instance_with_no_failed_request(start, workspace):
    runtime = start(settings("v1", env={"GREETING": "one"}))
    workspace.publish(workspace.write({"requirements.txt": "", "server.py": SERVER}))
    first = serving(runtime, "one")
    with Load(runtime.port, rate=50) as load:
        wait_for(lambda: len(load.records) > 20, 10, what="load running")
        assert put(runtime, settings("v2", env={"GREETING": "two"})).json() == {"settings": "v2"}
        second = serving(runtime, "two")
        runtime.wait_for_state(settings="v2", received="v2", status="serving")
        count = len(load.records)
        wait_for(lambda: len(load.records) > count + 20, 10, what="load after the switch")
    assert load.failures == []
    assert second["pid"] != first["pid"]
    assert json.loads((workspace.root / "settings.json").read_text())["version"] == "v2"  # kept for a restart


def test_config_the_app_reloads_itself_changes_no_process(start, workspace):
    runtime = start(settings("v1", config={"GREETING": "one"}, config_version=1, config_reload="signal"))
    workspace.publish(workspace.write({"requirements.txt": "", "server.py": SERVER}))
    first = serving(runtime, "one")
    put(runtime, settings("v2", config={"GREETING": "two"}, config_version=2, config_reload="signal"))
    state = runtime.wait_for_state(settings="v2", config_version=2)
    assert len(state["instances"]) == 1
    assert answer(runtime) == first  # the same process, still with what it started with


@pytest.mark.parametrize(("body", "error"), [
    ([1], "settings must be a JSON object"),
    ({"run": "x", "colour": "red"}, "unknown settings: colour"),
    ({"env": {"A": 1}}, "env must map names to strings"),
    ({"config_reload": "sometimes"}, "config_reload must be one of restart, signal, webhook, none"),
    ({"withheld": True}, "settings sent here carry the config values (withheld: false)"),
])
def test_bad_settings_are_refused_and_change_nothing(start, workspace, body, error):
    runtime = start(settings("v1", env={"GREETING": "one"}))
    workspace.publish(workspace.write({"requirements.txt": "", "server.py": SERVER}))
    first = serving(runtime, "one")
    refused = put(runtime, body)
    assert refused.status_code == 400 and refused.json() == {"error": error}
    assert runtime.state()["received"] == "v1" and answer(runtime) == first


def test_withheld_config_values_hold_the_build_until_they_are_pushed(start, workspace):
    runtime = start(settings("v1", config={}, config_version=1, withheld=True))
    workspace.publish(workspace.write({"requirements.txt": "", "server.py": SERVER}))
    state = wait_for(lambda: (s := runtime.state()).get("steps") and s, 30, what="a step reported")
    assert state["received"] == "" and state["steps"][-1]["text"] == "waiting for the config variables from the control plane"
    assert try_get(runtime.port)[0] == 503  # nothing was started without its config
    put(runtime, settings("v1", config={"GREETING": "secret"}, config_version=1))
    serving(runtime, "secret")
    assert runtime.wait_for_state(status="serving")["received"] == "v1"


def test_a_restarted_runtime_resumes_with_the_settings_it_kept(start, workspace):
    runtime = start(settings("v1", env={"GREETING": "one"}, issued=1.0))
    workspace.publish(workspace.write({"requirements.txt": "", "server.py": SERVER}))
    serving(runtime, "one")
    put(runtime, settings("v2", config={"GREETING": "kept"}, config_version=1, issued=2.0))
    serving(runtime, "kept")
    runtime.stop()
    # The pod's environment still says v1 (or v2 withheld): the kept file wins, without waiting.
    for first in (settings("v1", env={"GREETING": "one"}, issued=1.0),
                  settings("v2", config={}, config_version=1, withheld=True, issued=3.0)):
        again = start(first)
        serving(again, "kept")
        assert again.state()["received"] == "v2"
        again.stop()


def test_settings_from_a_mounted_secret_start_the_app_with_its_config(start, workspace, tmp_path):
    """`PAAS_SETTINGS_SOURCE`: the same JSON in a file (a Kubernetes Secret), config values
    included, so an exported pod serves with its config and no control plane."""
    source = tmp_path / "secret" / "runtime-settings.json"
    source.parent.mkdir()
    source.write_text(json.dumps(settings("v7", config={"GREETING": "from-the-secret"}, config_version=7)))
    runtime = start(settings("v7", config={}, config_version=7, withheld=True), PAAS_SETTINGS_SOURCE=str(source))
    workspace.publish(workspace.write({"requirements.txt": "", "server.py": SERVER}))
    serving(runtime, "from-the-secret")
    assert runtime.state()["received"] == "v7"  # nothing left to push


def test_an_unreadable_settings_source_is_one_sentence(workspace, tmp_path):
    from paas_runtime.settings import ConfigError, Settings

    environ = {"PORT": "8080", "PAAS_APP_DIR": str(workspace.root), "PAAS_SETTINGS_SOURCE": str(tmp_path / "none.json")}
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(environ, ("python",))
    assert raised.value.problems == [f"PAAS_SETTINGS_SOURCE: cannot read {tmp_path / 'none.json'}: No such file or directory"]
