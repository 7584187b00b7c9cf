"""`paas rollback` means what it says: without a revision, the newest release that served
before the one serving now; failed and never-served releases skipped; the release already
serving is a clear error; messages name the release they go back to, never nested."""

from __future__ import annotations

import itertools

import pytest

from helpers import break_app, get_text, head_of, set_text, stdlib_app, stdlib_manifest, wait_for
from paas import runtime_status

pytestmark = pytest.mark.slow
_numbers = itertools.count(1)


@pytest.fixture
def app(control_plane, tmp_path):
    """v1 'one', v2 'two' served; v3 broken, failed; v2 serves."""
    cp = control_plane
    name = f"rb-{next(_numbers)}"
    repo = stdlib_app(tmp_path / name, "one")
    url = cp.create(stdlib_manifest(name))["url"]
    cp.push(repo, name)
    revisions = {"one": head_of(repo), "two": set_text(repo, "two")}
    cp.push(repo, name)
    revisions["broken"] = break_app(repo)
    assert cp.push(repo, name, check=False).returncode != 0
    yield cp, name, url, revisions
    cp.api("DELETE", f"/apps/{name}")


def rollback(cp, name: str, revision: str | None = None, wait: bool = True):
    body = ({} if revision is None else {"revision": revision}) | ({} if wait else {"wait": False})
    return cp.api("POST", f"/apps/{name}/rollback", **({"json": body} if body else {}))


def live(cp, name: str, number: int) -> None:
    wait_for(
        lambda: cp.api("GET", f"/apps/{name}").json()["serving"]["number"] == number, 30, 0.1, f"v{number} serving"
    )


def test_rollback_without_a_revision_goes_back_one_served_release_at_a_time(app):
    cp, name, url, revisions = app
    first = rollback(cp, name)
    assert first.status_code == 201, first.text
    assert first.json()["message"] == "rollback to v1 (one)"  # v3 failed: skipped; v2 serves
    assert first.json()["revision"] == revisions["one"]
    assert first.json()["status"] == "live"  # it answers once the release serves
    assert get_text(url) == "one"

    second = rollback(cp, name)  # the newest that served before v4: v2
    assert second.status_code == 201 and second.json()["message"] == "rollback to v2 (two)"
    live(cp, name, 5)
    assert get_text(url) == "two"
    statuses = [r["status"] for r in cp.api("GET", f"/apps/{name}/releases").json()["releases"]]
    assert statuses == ["live", "superseded", "failed", "superseded", "superseded"]


def test_rollback_to_a_hash_works_right_after_a_rollback(app):
    cp, name, url, revisions = app
    assert rollback(cp, name, "v1", wait=False).status_code == 201
    # At once (v4 may not serve yet): any revision that served, by its hash. Compared with
    # what is deployed, not with what still serves (v2), or this would be "serves v2 already".
    again = rollback(cp, name, revisions["two"][:10])
    assert again.status_code == 201, again.text
    assert again.json()["message"] == "rollback to v2 (two)"
    live(cp, name, 5)
    assert get_text(url) == "two"
    releases = cp.api("GET", f"/apps/{name}/releases").json()["releases"]
    assert (releases[0]["number"], releases[0]["status"]) == (5, "live")
    # v4 served for a moment if its switch beat the second rollback, else it never did.
    assert (releases[1]["number"], releases[1]["status"]) in ((4, "superseded"), (4, "cancelled"))


@pytest.mark.parametrize(
    ("target", "status", "error"),
    [
        ("v2", 400, "{name} serves v2 ({two}) already"),
        ("{two}", 400, "{name} serves v2 ({two}) already"),
        ("v3", 400, "v3 of {name} never served (failed); pick one that did"),
        ("{broken}", 400, "revision {broken_long} of {name} never served (failed); pick one that did"),
        ("v9", 404, "{name} has no release v9"),
        ("abcdef0123", 404, "{name} has no release of revision abcdef0123"),
        ("latest", 400, "revision 'latest': give a release number (v3) or a commit hash (7+ hex digits)"),
    ],
)
def test_rollback_errors_say_what_is_wrong_and_change_nothing(app, target, status, error):
    cp, name, url, revisions = app
    values = {"name": name, "two": revisions["two"][:12], "broken": revisions["broken"][:12],
              "broken_long": revisions["broken"][:12]}
    response = rollback(cp, name, target.format(**values))
    assert response.status_code == status
    assert response.json()["error"] == error.format(**values)
    assert len(cp.api("GET", f"/apps/{name}/releases").json()["releases"]) == 3
    assert get_text(url) == "two"


def test_the_cli_prints_the_rollback_in_one_line(app):
    cp, name, _, revisions = app
    done = cp.cli("rollback", name)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{name}: v4 live (rollback to v1 (one)), {revisions['one'][:12]}\n"
    refused = cp.cli("rollback", name, "v3")
    assert refused.returncode == 1 and refused.stderr == f"error: v3 of {name} never served (failed); pick one that did\n"


@pytest.mark.parametrize(
    ("reported", "settled"),
    [
        ({"serving": "two", "target": "two", "link": "two"}, True),
        ({"serving": "two", "target": "two"}, True),  # a runtime that doesn't say where the link is
        ({"serving": "two", "target": "two", "link": "one"}, False),  # git-sync moved on; not seen yet
        ({"serving": "two", "target": "one", "link": "two"}, False),  # switching to a revision since replaced
    ],
)
def test_a_serving_revision_names_a_release_only_once_the_pod_has_settled(reported, settled):
    """Two quick deploys (v4 'one', then v5 'two' while 'two' still serves) must not make v5
    live before the runtime has followed the link through 'one' and back."""
    assert runtime_status.parse(reported).settled is settled
