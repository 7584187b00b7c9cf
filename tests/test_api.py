"""The API answers bad input with one clear JSON error and changes nothing."""

from __future__ import annotations

import json
import socket

import pytest

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
