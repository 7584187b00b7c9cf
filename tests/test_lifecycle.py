"""Changing an app after it was created, without downtime: `paas config` (and its config
sidecar's signal and webhook), `paas apply`, `paas restart`, volumes that outlive the pod —
on the local backend, with real pods and steady load."""

from __future__ import annotations

import itertools
import json

import pytest

from helpers import (
    STDLIB_SERVER,
    Load,
    get_text,
    git,
    reloading_app,
    seen,
    stdlib_app,
    stdlib_manifest,
    wait_for,
)

pytestmark = pytest.mark.slow
_numbers = itertools.count(1)


def manifest(name: str, extra: str = "") -> str:
    return stdlib_manifest(name) + extra


@pytest.fixture
def app(control_plane, tmp_path):
    """Yields (cp, make): make(extra manifest lines) deploys an app saying what it runs with
    (RELOADING_SERVER) and returns (name, url, repo)."""
    cp = control_plane
    made = []

    def make(extra: str = "") -> tuple[str, str, object]:
        name = f"life-{next(_numbers)}"
        repo = reloading_app(tmp_path / name)
        url = cp.create(manifest(name, extra))["url"]
        made.append(name)
        cp.push(repo, name)
        return name, url, repo

    yield cp, make
    for name in made:
        cp.api("DELETE", f"/apps/{name}")


def test_config_set_get_unset_reach_the_app_as_releases(app):
    cp, make = app
    name, url, _ = make()
    assert seen(url)["env"] == "-"
    done = cp.cli("config", "set", name, "GREETING=hello there", "COLOR=blue")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{name}: v2 live (config: set COLOR, GREETING), config v1\n"
    assert seen(url)["env"] == "hello there"
    assert cp.cli("config", "get", name).stdout == "COLOR=blue\nGREETING=hello there\n"
    assert cp.cli("config", "get", name, "COLOR").stdout == "blue\n"
    assert cp.cli("config", "unset", name, "GREETING").returncode == 0
    assert seen(url)["env"] == "-"
    releases = cp.api("GET", f"/apps/{name}/releases").json()["releases"]
    assert [(r["message"], r["config"], r["status"]) for r in releases] == [
        ("config: unset GREETING", 2, "live"), ("config: set COLOR, GREETING", 1, "superseded"), ("one", 0, "superseded")]
    shown = json.dumps(cp.api("GET", f"/apps/{name}").json()["events"]) + cp.api("GET", f"/apps/{name}/logs").text
    assert "hello there" not in shown and "blue" not in shown  # values: to the token holder only
    # A config release is rolled back like a code release.
    rolled = cp.api("POST", f"/apps/{name}/rollback", json={"revision": "v2"})
    assert rolled.status_code == 201 and rolled.json()["message"] == "rollback to v2 (config: set COLOR, GREETING)"
    assert seen(url)["env"] == "hello there"
    assert cp.api("GET", f"/apps/{name}/config").json()["vars"] == {"COLOR": "blue", "GREETING": "hello there"}


@pytest.mark.parametrize(("changes", "problem"), [
    ({"PORT": "1"}, "PORT is set by the platform"),
    ({"PAAS_X": "1"}, "PAAS_X is set by the platform"),
    ({"1BAD": "x"}, "'1BAD' is not a valid environment variable name"),
    ({"A": {"nested": 1}}, "A must be a string, number or boolean of at most 32 KiB, or null"),
])
def test_bad_config_is_refused_and_changes_nothing(app, changes, problem):
    cp, make = app
    name, url, _ = make()
    answer = cp.api("PUT", f"/apps/{name}/config", json=changes)
    assert answer.status_code == 400 and answer.json()["details"] == [problem]
    assert cp.api("GET", f"/apps/{name}/config").json()["version"] == 0


def test_bytes_an_environment_cant_hold_are_refused_with_the_name_and_change_nothing(app, tmp_path):
    cp, make = app
    name, url, _ = make("env: {GREETING: from-manifest}\n")
    nul = "holds a NUL byte, which an environment variable or a command line can't hold"
    for changes, problems in [
        ({"GREETING": "hi\x00there"}, [f"GREETING: its value {nul}"]),
        ({"A=B": "x", "C\x00D": "y", "E\n": "z"}, [f"{n!r} is not a valid environment variable name" for n in ("A=B", "C\x00D", "E\n")]),
        ({"OK": "fine", "BAD": "\ud800"}, ["BAD: its value is not valid UTF-8 (it holds an unpaired surrogate)"]),
    ]:
        answer = cp.api("PUT", f"/apps/{name}/config", json=changes)
        assert answer.status_code == 400, answer.text
        assert answer.json()["details"] == problems
    assert cp.api("GET", f"/apps/{name}/config").json()["version"] == 0
    assert [r["message"] for r in cp.api("GET", f"/apps/{name}/releases").json()["releases"]] == ["one"]
    # The manifest's env the same way, by its field path.
    (tmp_path / "nul.yaml").write_text(manifest(name, 'env: {GREETING: "from\\0manifest"}\n'))
    applied = cp.cli("apply", "-f", str(tmp_path / "nul.yaml"))
    assert (applied.returncode, applied.stderr) == (1, f"error: invalid manifest: env.GREETING: {nul}\n")
    assert cp.api("GET", f"/apps/{name}").json()["manifest"]["env"] == {"GREETING": "from-manifest"}
    assert seen(url)["env"] == "from-manifest"  # it serves on as it did


def test_config_overrides_the_manifests_env(app):
    cp, make = app
    name, url, _ = make("env: {GREETING: from-manifest}\n")
    assert seen(url)["env"] == "from-manifest"
    cp.cli("config", "set", name, "GREETING=from-config")
    assert seen(url)["env"] == "from-config"


def test_signal_mode_keeps_the_apps_process_and_rewrites_config_json(app):
    cp, make = app
    name, url, _ = make("sidecars: [config]\nconfig: {reload: signal}\n")
    before = seen(url)
    assert cp.cli("config", "set", name, "GREETING=hup").returncode == 0
    after = wait_for(lambda: (s := seen(url))["file"] == "hup" and s, 15, 0.1, "config.json reloaded on SIGHUP")
    assert after["pid"] == before["pid"] and after["hups"] == 1
    config_dir = cp.data_dir / "pods" / name / "workspace" / "config"
    assert json.loads((config_dir / "config.json").read_text()) == {"GREETING": "hup"}
    assert (config_dir / "env").read_text() == "GREETING=hup\n"
    assert config_dir.is_symlink()


def test_webhook_mode_calls_the_app(app):
    cp, make = app
    name, url, _ = make("sidecars: [config]\nconfig: {reload: webhook, webhook: /reload-now}\n")
    pid = seen(url)["pid"]
    assert cp.cli("config", "set", name, "GREETING=hooked").returncode == 0
    after = wait_for(lambda: (s := seen(url))["hooks"] == 1 and s, 15, 0.1, "the webhook called")
    assert after["file"] == "hooked" and after["pid"] == pid


def test_signal_mode_needs_the_config_sidecar(control_plane):
    answer = control_plane.api("POST", "/apps", data=manifest("no-sidecar", "config: {reload: signal}\n"))
    assert answer.status_code == 400
    assert answer.json()["error"] == "config.reload: signal needs the config sidecar: add `sidecars: [config]`"


def test_restart_apply_and_config_under_load_fail_no_request(app, tmp_path):
    cp, make = app
    name, url, _ = make()
    with Load(url, rate=60) as load:
        wait_for(lambda: len(load.bodies) > 20, 10, what="load running")
        pid = seen(url)["pid"]
        restarted = cp.cli("restart", name)
        assert restarted.returncode == 0 and restarted.stdout.startswith(f"{name}: restarted in ")
        assert seen(url)["pid"] != pid
        (tmp_path / "changed.yaml").write_text(manifest(name, "env: {GREETING: applied}\n"))
        applied = cp.cli("apply", "-f", str(tmp_path / "changed.yaml"))
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.splitlines() == [
            f"{name}: 1 change(s), rolled out live: a new instance beside the old one, switched when healthy:",
            "  env.GREETING: - -> applied",
        ]
        assert seen(url)["env"] == "applied"
        assert cp.cli("config", "set", name, "GREETING=configured").returncode == 0
        assert seen(url)["env"] == "configured"
        count = len(load.bodies)
        wait_for(lambda: len(load.bodies) > count + 20, 10, what="more load after the last switch")
    assert load.failures == []


def test_apply_of_what_needs_a_new_pod_says_so(app, tmp_path):
    cp, make = app
    name, url, _ = make()
    (tmp_path / "pod.yaml").write_text(manifest(name, "sidecars: [topz]\n"))
    applied = cp.cli("apply", "-f", str(tmp_path / "pod.yaml"))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines()[0] == f"{name}: 1 change(s), the pod was replaced (these changes need a new pod):"
    wait_for(lambda: "topz" in {c["name"] for c in cp.api("GET", f"/apps/{name}").json()["containers"]}, 30,
             what="the new pod with topz")
    wait_for(lambda: seen(url).get("text") == "one", 60, 0.1, "serving again")


def test_apply_that_breaks_the_app_is_undone_and_invalid_changes_nothing(app, tmp_path):
    cp, make = app
    name, url, _ = make()
    (tmp_path / "broken.yaml").write_text(manifest(name).replace("run: python server.py", "run: python nope.py"))
    broken = cp.cli("apply", "-f", str(tmp_path / "broken.yaml"))
    assert broken.returncode == 1
    assert broken.stderr.startswith(f"error: the new instance of {name} failed (the app exited with code 2")
    assert "the old one keeps serving" in broken.stderr
    assert cp.api("GET", f"/apps/{name}").json()["manifest"]["run"] == "python server.py"
    assert seen(url)["text"] == "one"
    (tmp_path / "invalid.yaml").write_text(manifest(name, "port: 80\n"))
    invalid = cp.cli("apply", "-f", str(tmp_path / "invalid.yaml"))
    assert invalid.returncode == 1 and invalid.stderr.startswith("error: invalid manifest: port:")
    other = cp.api("PUT", f"/apps/{name}", data=manifest("someone-else"))
    assert other.status_code == 400 and "apply it to its own app" in other.json()["error"]
    again = cp.api("POST", "/apps", data=manifest(name))
    assert again.status_code == 409 and again.json()["error"].endswith("change it with `paas apply -f FILE`")


def test_a_config_the_app_fails_with_is_undone(app):
    cp, make = app
    name, url, repo = make()
    server = repo / "server.py"
    server.write_text(server.read_text().replace("load()\n\n\nclass", 'load()\nif os.environ.get("CRASH"):\n    raise SystemExit("crash asked for")\n\n\nclass', 1))
    git("commit", "-q", "-am", "crashes on CRASH", cwd=repo)
    cp.push(repo, name)
    failed = cp.cli("config", "set", name, "CRASH=1")
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"error: {name} failed with config v1 (the app exited with code 1")
    assert cp.api("GET", f"/apps/{name}/config").json()["version"] == 0  # back to what serves
    assert seen(url)["text"] == "one"


def _note_reader(repo, text: str) -> None:
    """Commit the stdlib app answering ``text`` and the note it keeps in its volume."""
    (repo / "server.py").write_text(STDLIB_SERVER.replace('TEXT = "one"', f"TEXT = {text!r}").replace(
        "body = TEXT.encode()", 'body = (TEXT + " " + open("instance/note.txt").read()).encode()'
    ).replace("\nclass Handler", '\nif not os.path.exists("instance/note.txt"):\n'
              '    open("instance/note.txt", "w").write("first")\n\n\nclass Handler', 1))
    git("commit", "-q", "-am", f"{text} reads its note", cwd=repo)


def test_a_volume_keeps_its_files_across_deploys_rollbacks_and_restarts(control_plane, tmp_path):
    cp = control_plane
    name = "keeps-data"
    repo = stdlib_app(tmp_path / name, "one")
    _note_reader(repo, "one")
    url = cp.create(manifest(name, "volumes: {data: instance}\n"))["url"]
    cp.push(repo, name)
    assert get_text(url) == "one first"
    volume = cp.data_dir / "pods" / name / "volumes" / "vol-data"
    (volume / "note.txt").write_text("kept")  # as the app would write it
    _note_reader(repo, "two")
    cp.push(repo, name)
    assert get_text(url) == "two kept"
    assert cp.cli("rollback", name).returncode == 0
    assert get_text(url) == "one kept"
    cp.stop()
    cp.start()
    wait_for(lambda: get_text(url) == "one kept", 60, 0.1, "after a control plane restart")
    hard = cp.cli("restart", name, "--hard")
    assert hard.returncode == 0, hard.stderr
    wait_for(lambda: get_text(url) == "one kept", 60, 0.1, "after restart --hard")
    shown = cp.cli("status", name).stdout.splitlines()
    assert any(line.startswith("volume:    data at instance (") for line in shown), shown
    assert cp.api("DELETE", f"/apps/{name}").status_code == 200
    assert not volume.exists()


def test_a_revision_holding_the_volumes_path_fails_clearly(control_plane, tmp_path):
    cp = control_plane
    repo = stdlib_app(tmp_path / "shadow", "one")
    (repo / "data").mkdir()
    (repo / "data" / "seed.txt").write_text("from git")
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "ships data/", cwd=repo)
    cp.create(manifest("shadow", "volumes: {files: data}\n"))
    pushed = cp.push(repo, "shadow", check=False)
    assert pushed.returncode != 0
    assert "paas: failed: the revision has 'data', where a volume is linked" in pushed.stderr
    assert cp.api("DELETE", "/apps/shadow").status_code == 200


def test_an_absolute_volume_is_told_to_the_app(app):
    cp, make = app
    name, url, _ = make("volumes: {data: /srv/data}\n")
    where = seen(url)["volume"]
    assert where == str(cp.data_dir / "pods" / name / "volumes" / "vol-data")  # the local backend's /srv/data


def test_restart_with_nothing_deployed_fails_and_says_so(control_plane):
    control_plane.create("name: idle-restart\n")
    for hard in ((), ("--hard",)):
        done = control_plane.cli("restart", "idle-restart", *hard)
        assert done.returncode != 0 and done.stdout == ""
        assert done.stderr.strip().splitlines()[-1].endswith(
            "idle-restart has never served, so there is nothing to restart: push to it first"
        ), done.stderr
    events = [e["message"] for e in control_plane.api("GET", "/apps/idle-restart").json()["events"]]
    assert not any("restart" in m for m in events)  # nothing was touched
    assert control_plane.api("DELETE", "/apps/idle-restart").status_code == 200

