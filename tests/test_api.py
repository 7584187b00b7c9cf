"""The API answers bad input with one clear JSON error and changes nothing."""

from __future__ import annotations

import json
import shutil
import socket

import pytest

from helpers import fill_disk, small_disk

MANIFEST = "name: hello\nruntime: python\n"


def create(client, auth, body: str, content_type: str = "application/yaml"):
    return client.post("/api/v1/apps", data=body, headers=auth | {"Content-Type": content_type})


def names(client, auth) -> list[str]:
    return [a["name"] for a in client.get("/api/v1/apps", headers=auth).get_json()["apps"]]


def test_create_list_get_delete(client, auth):
    response = create(client, auth, MANIFEST)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["name"] == "hello" and 10000 <= body["port"] < 20000
    assert body["url"] == f"http://localhost:{body['port']}/"
    assert body["state"] == "pending"
    assert names(client, auth) == ["hello"]
    assert client.get("/api/v1/apps/hello", headers=auth).get_json()["manifest"]["runtime"] == "python"
    assert client.get("/api/v1/apps/hello/releases", headers=auth).get_json() == {"releases": []}
    assert client.delete("/api/v1/apps/hello", headers=auth).status_code == 200
    assert names(client, auth) == []


def test_manifest_as_json(client, auth):
    response = create(client, auth, json.dumps({"name": "j", "env": {"A": 1}}), "application/json")
    assert response.status_code == 201
    assert response.get_json()["manifest"]["env"] == {"A": "1"}


def test_invalid_manifest_reports_every_problem(client, auth):
    body = "name: Bad_Name\nruntime: ruby\nsource: {ref: 'a..b'}\nport: 80\nhealthcheck: {path: nope}\nextra: 1\n"
    response = create(client, auth, body)
    assert response.status_code == 400
    error = response.get_json()
    paths = sorted(d.split(":")[0] for d in error["details"])
    assert paths == ["extra", "healthcheck.path", "name", "port", "runtime", "source.ref"]
    assert "source.ref: must be a branch, tag or commit" in error["details"]
    assert error["error"].startswith("invalid manifest:")
    assert names(client, auth) == []


@pytest.mark.parametrize(
    "body, needle",
    [
        ("name: [", "not valid YAML"),
        ("- a list", "must be a mapping"),
        ("", "send the manifest"),
        ("{\"name\": ", "not valid JSON"),
        ("runtime: python", "name: is required"),
        pytest.param("name: a\nport: " + "9" * 5000, "a value that can't be read: Exceeds the limit (4300 digits)",
                     id="yaml-5000-digits"),
        pytest.param('{"name": "a", "port": ' + "9" * 5000 + "}", "a value that can't be read: Exceeds the limit",
                     id="json-5000-digits"),
        ("name: a\nenv: {A: 2001-13-45}", "a value that can't be read: month must be in 1..12"),
        pytest.param("[" * 10_000, "nested too deeply", id="yaml-nested-10000"),
        pytest.param('{"a": ' * 10_000, "nested too deeply", id="json-nested-10000"),
    ],
)
def test_unparseable_manifests(client, auth, body, needle):
    response = create(client, auth, body)
    assert response.status_code == 400
    assert needle in response.get_json()["error"]


@pytest.mark.parametrize("name", ["../x", "A_B", "a" * 64, "-x", "x-", "", "a.b", "a b"])
def test_bad_app_names_are_rejected(client, auth, name):
    response = create(client, auth, json.dumps({"name": name}), "application/json")
    assert response.status_code == 400
    assert response.get_json()["details"][0].startswith("name: must be a DNS label")
    assert names(client, auth) == []


@pytest.mark.parametrize("name", ["A_B", "a" * 64, "x..y"])
def test_bad_app_names_in_urls(client, auth, name):
    response = client.get(f"/api/v1/apps/{name}", headers=auth)
    assert response.status_code == 400
    assert "invalid app name" in response.get_json()["error"]


@pytest.mark.parametrize(
    "repo",
    ["ext::sh -c touch% /tmp/pwned", "file:///etc", "/srv/repo.git", "../other", "-upload-pack=x", "https://"],
)
def test_repo_schemes_outside_the_allowed_are_rejected(client, auth, repo):
    response = create(client, auth, json.dumps({"name": "r", "source": {"repo": repo}}), "application/json")
    assert response.status_code == 400
    assert response.get_json()["details"][0].startswith("source.repo: must be a remote git URL")


def test_remote_repo_is_accepted(client, auth):
    body = {"name": "remote", "source": {"repo": "https://example.com/me/hello.git", "ref": "v1.0", "period": 5}}
    assert create(client, auth, json.dumps(body), "application/json").status_code == 201


def test_duplicate_app_is_409_and_keeps_the_first(client, auth):
    first = create(client, auth, MANIFEST + "env: {A: first}\n").get_json()
    response = create(client, auth, MANIFEST + "env: {A: second}\n")
    assert response.status_code == 409
    assert response.get_json()["error"] == "app 'hello' already exists: change it with `paas apply -f FILE`"
    assert client.get("/api/v1/apps/hello", headers=auth).get_json()["manifest"] == first["manifest"]


def test_port_taken_by_another_app_is_409(client, auth):
    port = create(client, auth, MANIFEST).get_json()["port"]
    response = create(client, auth, f"name: other\nport: {port}\n")
    assert response.status_code == 409
    assert str(port) in response.get_json()["error"]


def test_port_in_use_on_the_machine_is_409(client, auth):
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        response = create(client, auth, f"name: busy\nport: {port}\n")
    assert response.status_code == 409
    assert f"port {port} is already in use" in response.get_json()["error"]


@pytest.mark.parametrize("path", ["/apps/nope", "/apps/nope/releases", "/apps/nope/logs"])
def test_unknown_app_is_404(client, auth, path):
    response = client.get(f"/api/v1{path}", headers=auth)
    assert response.status_code == 404
    assert response.get_json() == {"error": "app 'nope' not found", "details": []}


def test_delete_unknown_app_is_404(client, auth):
    assert client.delete("/api/v1/apps/nope", headers=auth).status_code == 404


@pytest.mark.parametrize(
    "headers, message",
    [
        ({}, "missing token"),
        ({"Authorization": "Bearer wrong"}, "invalid token"),
        ({"Authorization": "Basic dGVzdA=="}, "invalid token"),
    ],
)
def test_bad_or_missing_token_is_401(client, headers, message):
    response = client.post("/api/v1/apps", data=MANIFEST, headers=headers)
    assert response.status_code == 401
    assert message in response.get_json()["error"]
    assert client.get("/api/v1/apps", headers=headers).status_code == 401


def test_token_never_echoed_in_errors(client):
    response = client.get("/api/v1/apps", headers={"Authorization": "Bearer s3cret-guess"})
    assert "s3cret-guess" not in response.get_data(as_text=True)


def test_healthz_needs_no_token(client):
    body = client.get("/api/v1/healthz").get_json()
    assert body["status"] == "ok" and body["backend"] == "local"


def test_unknown_route_is_json_404(client, auth):
    response = client.get("/api/v1/nothing", headers=auth)
    assert response.status_code == 404 and "error" in response.get_json()


def test_store_survives_a_new_control_plane(tmp_path, auth):
    from paas.server import create_app

    config = {"data_dir": tmp_path / "d", "token": "test-token-123"}
    first = create_app(config, start=False)
    assert create(first.test_client(), auth, MANIFEST).status_code == 201
    first.extensions["paas"].close()
    second = create_app(config, start=False)
    try:
        assert names(second.test_client(), auth) == ["hello"]
    finally:
        second.extensions["paas"].close()


def test_rollback_errors(client, auth):
    assert client.post("/api/v1/apps/nope/rollback", headers=auth).status_code == 404
    create(client, auth, MANIFEST)
    response = client.post("/api/v1/apps/hello/rollback", headers=auth)
    assert response.status_code == 400
    assert response.get_json()["error"] == "nothing serves yet, so there is nothing to roll back from"
    response = client.post("/api/v1/apps/hello/rollback", headers=auth, json={"revision": "v9"})
    assert response.status_code == 404 and response.get_json()["error"] == "hello has no release v9"
    response = client.post("/api/v1/apps/hello/rollback", headers=auth, json={"revision": "not a rev"})
    assert response.status_code == 400 and "release number" in response.get_json()["error"]
    response = client.post("/api/v1/apps/hello/rollback", headers=auth, json=["v1"])
    assert response.status_code == 400
    response = client.post("/api/v1/apps/hello/rollback", headers=auth, json={"revision": "²"})  # isdigit(), not a number
    assert response.status_code == 400 and "release number" in response.get_json()["error"]
    response = client.post("/api/v1/apps/hello/rollback", headers=auth, json={"revision": "v" + "9" * 5000})
    assert response.status_code == 404 and response.get_json()["error"].startswith("hello has no release v999")


@pytest.mark.parametrize(
    ("method", "path", "needle"),
    [("PUT", "config", "send a JSON object"), ("POST", "restart", "send {"), ("POST", "rollback", "send JSON like")],
)
def test_json_nested_too_deeply_is_bad_input(client, auth, method, path, needle):
    create(client, auth, MANIFEST)
    response = client.open(f"/api/v1/apps/hello/{path}", method=method, data="[" * 100_000,
                           headers=auth | {"Content-Type": "application/json"})
    assert response.status_code == 400 and needle in response.get_json()["error"]


def test_rollback_of_a_remote_repo_app_says_how(client, auth):
    body = {"name": "remote", "source": {"repo": "https://example.com/me/hello.git"}}
    create(client, auth, json.dumps(body), "application/json")
    response = client.post("/api/v1/apps/remote/rollback", headers=auth)
    assert response.status_code == 400 and "roll back by moving main there" in response.get_json()["error"]


def test_listing_apps_reads_the_reconcilers_snapshot_not_the_backend(app, client, auth):
    control = app.extensions["paas"]
    for number in range(5):
        assert create(client, auth, f"name: snap{number}\n").status_code == 201
    calls = []
    asked = control.backend.pods
    control.backend.pods = lambda credentials=None: calls.append(1) or asked(credentials)  # count, then ask
    for _ in range(10):
        assert len(client.get("/api/v1/apps", headers=auth).get_json()["apps"]) == 5
        assert client.get("/api/v1/apps/snap0", headers=auth).status_code == 200
    assert calls == []
    control.reconciler.reconcile()  # one pass: one question to the backend for every app
    assert len(calls) == 1


# -- a repository password stays with the origin it was given for ---------------------------

ORIGIN = "https://alice@git.example.com/me/app.git"


def stored_password(app, name: str) -> str:
    return app.extensions["paas"].store.get_app(name).git_password


def remote(repo: str, name: str = "moving") -> str:
    return json.dumps({"name": name, "source": {"repo": repo}})


@pytest.mark.parametrize("repo", [
    "https://alice@evil.example.com/me/app.git",  # another host
    "https://alice@git.example.com:8443/me/app.git",  # another port
    "http://alice@git.example.com/me/app.git",  # another scheme
    "https://mallory@git.example.com/me/app.git",  # another user
    "https://git.example.com/me/app.git",  # no user
    "ssh://alice@git.example.com/me/app.git",
])
def test_a_stored_password_does_not_follow_the_url_to_another_origin(app, client, auth, repo):
    assert create(client, auth, remote(ORIGIN.replace("alice@", "alice:s3cret@")), "application/json").status_code == 201
    before = client.get("/api/v1/apps/moving", headers=auth).get_json()["manifest"]
    answer = client.put("/api/v1/apps/moving", data=remote(repo), headers=auth | {"Content-Type": "application/json"})
    assert answer.status_code == 400
    error = answer.get_json()
    assert error["error"].startswith("source.repo: the stored repository password is for https://alice@git.example.com:443 "
                                     "and is not sent to ")
    assert error["details"] == [error["error"]] and "s3cret" not in answer.text
    assert client.get("/api/v1/apps/moving", headers=auth).get_json()["manifest"] == before
    assert stored_password(app, "moving") == "s3cret"


def test_a_password_is_kept_on_its_origin_replaced_by_a_new_one_and_dropped_when_asked(app, client, auth):
    json_type = auth | {"Content-Type": "application/json"}
    assert create(client, auth, remote(ORIGIN.replace("alice@", "alice:s3cret@")), "application/json").status_code == 201
    # Another repository of the same origin keeps it (the path is no part of the origin).
    same = client.put("/api/v1/apps/moving", data=remote(ORIGIN.replace("app.git", "other.git")), headers=json_type)
    assert same.status_code == 200 and [c["field"] for c in same.get_json()["changes"]] == ["source.repo"]
    assert stored_password(app, "moving") == "s3cret"
    # Another origin with its own password, in the URL or percent-encoded in the header.
    elsewhere = "https://bob@elsewhere.example/me/app.git"
    moved = client.put("/api/v1/apps/moving", data=remote(elsewhere.replace("bob@", "bob:two@")), headers=json_type)
    assert moved.status_code == 200
    assert {"field": "source.password", "old": "***", "new": "*** (new)"} in moved.get_json()["changes"]
    assert stored_password(app, "moving") == "two"
    again = client.put("/api/v1/apps/moving", data=remote(ORIGIN),
                       headers=json_type | {"Paas-Repository-Password": "th%C3%AErd"})
    assert again.status_code == 200 and stored_password(app, "moving") == "thîrd"
    # An empty one drops it: the only way to take a password to nowhere.
    dropped = client.put("/api/v1/apps/moving", data=remote(elsewhere), headers=json_type | {"Paas-Repository-Password": ""})
    assert dropped.status_code == 200 and stored_password(app, "moving") == ""
    assert {"field": "source.password", "old": "***", "new": None} in dropped.get_json()["changes"]


@pytest.mark.parametrize(("body", "header", "problem"), [
    (MANIFEST, "pw", "a repository password is for a source.repo, and this manifest has none (the app is deployed by push)"),
    (remote("https://a:pw@h.example/r.git"), "pw", "give the repository password once: in source.repo or with --password-file, not both"),
    (remote("ssh://git@h.example/r.git"), "pw", "source.repo: only an http(s) repository takes a password (ssh authenticates with a key)"),
    (remote("https://a@h.example/r.git"), "line%0Abreak", "Paas-Repository-Password: a password holds no control characters (a newline, a NUL)"),
    (remote("https://a@h.example/r.git"), "%FF", "Paas-Repository-Password: not a percent-encoded UTF-8 password"),
])
def test_a_password_given_apart_that_cant_be_used_is_refused(client, auth, body, header, problem):
    answer = client.post("/api/v1/apps", data=body, headers=auth | {"Paas-Repository-Password": header})
    assert answer.status_code == 400 and answer.get_json()["error"] == problem
    assert names(client, auth) == []


# -- bytes no process can take -----------------------------------------------------------------

@pytest.mark.parametrize(("body", "details"), [
    ('name: nul\nenv: {GREETING: "hi\\0there"}\n',
     ["env.GREETING: holds a NUL byte, which an environment variable or a command line can't hold"]),
    ('{"name": "sur", "env": {"A": "\\ud800"}}', ["env.A: is not valid UTF-8 (it holds an unpaired surrogate)"]),
    ('name: keys\nenv: {"A=B": 1, "C\\0": 2, "D\\n": 3}\n', [
        "env: 'A=B' is not a valid environment variable name; 'C\\x00' is not a valid environment variable name; "
        "'D\\n' is not a valid environment variable name"]),
    ('name: cmd\nrun: "python\\0 x"\nhealthcheck: {path: "/\\0"}\nsource: {repo: "https://h.example/r\\0"}\n', [
        "run: holds a NUL byte, which an environment variable or a command line can't hold",
        "healthcheck.path: holds a NUL byte, which an environment variable or a command line can't hold",
        "source.repo: holds a NUL byte, which an environment variable or a command line can't hold"]),
    ('name: nl\nsource: {repo: "https://h.example/r.git\\n"}\n',
     ["source.repo: must be a remote git URL (https://, http://, ssh://, git:// or user@host:path)"]),
])
def test_a_manifest_string_no_process_can_take_is_refused_with_its_field(client, auth, body, details):
    answer = create(client, auth, body, "application/json" if body.startswith("{") else "application/yaml")
    assert answer.status_code == 400 and answer.get_json()["details"] == details
    assert names(client, auth) == []


# -- host names an app may not claim ----------------------------------------------------------

@pytest.fixture
def domain_client(tmp_path):
    from paas.server import create_app

    flask_app = create_app({"data_dir": tmp_path / "data", "token": "test-token-123", "domain": "apps.example.com",
                            "internal_url": "http://paas.example.net:8000"}, start=False)
    yield flask_app.test_client()
    flask_app.extensions["paas"].close()


def test_hosts_that_are_someone_elses_are_refused_all_at_once(domain_client, auth):
    claims = ["hello.apps.example.com", "www.hello.apps.example.com", "localhost", "hello.localhost", "127.0.0.1",
              "10.1", "future.apps.example.com", "apps.example.com", "paas.example.net", "hello.example.org"]
    answer = create(domain_client, auth, json.dumps({"name": "hello", "hosts": claims}), "application/json")
    assert answer.status_code == 400
    assert answer.get_json()["details"] == [
        "hosts[2]: localhost is under localhost, which is every machine's own name; the app is served at hello.apps.example.com",
        "hosts[3]: hello.localhost is under localhost, which is every machine's own name; the app is served at hello.apps.example.com",
        "hosts[4]: 127.0.0.1 is an IP address, not a host name: the router serves apps by host name",
        "hosts[5]: 10.1 is an IP address, not a host name: the router serves apps by host name",
        "hosts[6]: future.apps.example.com is the app future's name (every app NAME is served at NAME.apps.example.com); "
        "the app is served at hello.apps.example.com",
        "hosts[7]: apps.example.com is the platform's own name",
        "hosts[8]: paas.example.net is the platform's own name",
    ]
    assert names(domain_client, auth) == []
    fine = [claims[0], claims[1], claims[-1]]
    assert create(domain_client, auth, json.dumps({"name": "hello", "hosts": fine}), "application/json").status_code == 201
    taken = domain_client.put("/api/v1/apps/hello", data=json.dumps({"name": "hello", "hosts": ["0x7f.1"]}),
                              headers=auth | {"Content-Type": "application/json"})
    assert taken.status_code == 400 and taken.get_json()["details"] == [
        "hosts[0]: 0x7f.1 is an IP address, not a host name: the router serves apps by host name"]
    assert domain_client.get("/api/v1/apps/hello", headers=auth).get_json()["manifest"]["hosts"] == fine


def test_a_full_data_directory_is_a_507_in_one_sentence_and_keeps_what_was_stored(tmp_path, auth):
    from paas.server import create_app

    with small_disk(tmp_path / "data", 8) as data:
        flask_app = create_app({"data_dir": data, "token": "test-token-123"}, start=False)
        try:
            client = flask_app.test_client()
            assert create(client, auth, "name: full\n").status_code == 201
            fill_disk(data)
            for n in range(200):  # until the store's write-ahead log has to grow
                answer = client.put("/api/v1/apps/full/config", json={"BIG": f"{n}" + "x" * 30000}, headers=auth)
                if answer.status_code != 200:
                    break
            free = shutil.disk_usage(data).free // (1024 * 1024)
            assert answer.status_code == 507, answer.data[:300]
            assert answer.get_json() == {
                "error": f"no space left on the data directory ({free} MB free)",
                "details": [f"{data} has {free} MB free: free some space there and try again"],
            }
            assert names(client, auth) == ["full"]
        finally:
            flask_app.extensions["paas"].close()
