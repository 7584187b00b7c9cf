"""`git push` tells the truth: it streams the deploy, ends with `live at …` or with why it
failed, fails when the deploy fails, and leaves the branch holding the code that serves."""

from __future__ import annotations

import re

import pytest

from helpers import (
    auth_env,
    break_app,
    get_text,
    git,
    head_of,
    set_text,
    stdlib_app,
    stdlib_manifest,
    wait_for,
)

pytestmark = pytest.mark.slow


def remote_head(cp, app: str, repo) -> str:
    out = git("ls-remote", f"{cp.url}/git/{app}.git", "refs/heads/main", cwd=repo, env=auth_env(cp.token))
    return out.stdout.split()[0] if out.stdout.strip() else ""


def remote_lines(stderr: str) -> list[str]:
    return [line.removeprefix("remote: ").rstrip() for line in stderr.splitlines() if line.startswith("remote: paas:")]


def test_push_streams_the_deploy_and_ends_with_where_it_is_live(control_plane, tmp_path):
    cp = control_plane
    repo = stdlib_app(tmp_path / "report", "one")
    created = cp.create(stdlib_manifest("report"))
    url = created["urls"][0]  # the router's: where the push says it is live
    pushed = cp.push(repo, "report")
    lines = remote_lines(pushed.stderr)
    expected = [
        f"paas: v1 stored ({head_of(repo)[:12]} 'one')",
        f"paas: building {head_of(repo)[:12]}",
        "paas: runtime python (as the manifest says)",
        "paas: command `python server.py` (the manifest's run)",
        "paas: dependencies: installing requirements.txt",  # or "… unchanged, reusing" once cached
        "paas: started `python server.py`; waiting for GET / to answer (up to 20 s)",
        "paas: healthy: traffic switched to",
        f"paas: v1 live at {url} in ",
    ]
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        if start.startswith("paas: dependencies"):
            assert line.startswith("paas: dependencies: requirements.txt unchanged") or line.startswith(start)
        else:
            assert line.startswith(start), (line, start)
    assert get_text(created["url"]) == "one"


def test_a_failed_deploy_fails_the_push_and_the_branch_keeps_what_serves(control_plane, tmp_path):
    cp = control_plane
    repo = stdlib_app(tmp_path / "rejected", "one")
    url = cp.create(stdlib_manifest("rejected"))["url"]
    cp.push(repo, "rejected")
    good = head_of(repo)
    broken = break_app(repo)

    pushed = cp.push(repo, "rejected", check=False)
    assert pushed.returncode != 0
    lines = remote_lines(pushed.stderr)
    assert "paas: failed: the app exited with code 1 before answering its health check" in lines
    assert "paas:   RuntimeError: broken on purpose" in lines  # the app's own error line
    assert lines[-1] == f"paas: v1 keeps serving; the branch stays at {good[:12]}"
    assert " ! [remote rejected] main -> main (deploy failed; v1 keeps serving)" in pushed.stderr
    # The remote branch holds the code that serves, which serves on.
    assert remote_head(cp, "rejected", repo) == good
    assert get_text(url) == "one"
    release = cp.api("GET", "/apps/rejected/releases").json()["releases"][0]
    assert (release["number"], release["revision"], release["status"]) == (2, broken, "failed")

    # The fix goes on top of the broken commit: an ordinary fast-forward that goes live.
    fixed = set_text(repo, "two")
    again = cp.push(repo, "rejected")
    assert "paas: v3 live at" in again.stderr
    assert remote_head(cp, "rejected", repo) == fixed and get_text(url) == "two"


def test_the_first_push_failing_leaves_no_branch(control_plane, tmp_path):
    cp = control_plane
    repo = stdlib_app(tmp_path / "first-fails", "one")
    break_app(repo)
    cp.create(stdlib_manifest("first-fails"))
    pushed = cp.push(repo, "first-fails", check=False)
    assert pushed.returncode != 0
    assert "paas: nothing serves yet; the branch stays at nothing (it was the first push)" in remote_lines(pushed.stderr)
    assert remote_head(cp, "first-fails", repo) == ""
    assert cp.api("GET", "/apps/first-fails").json()["state"] == "failed"


def test_push_option_nowait_returns_once_the_release_is_stored(control_plane, tmp_path):
    cp = control_plane
    repo = stdlib_app(tmp_path / "nowait", "one")
    server = repo / "server.py"
    # This revision takes 3 s to start listening: a push that waited could not return before.
    server.write_text(server.read_text().replace("import os\n", "import os\nimport time\n\ntime.sleep(3)\n", 1))
    git("commit", "-q", "-am", "slow start", cwd=repo)
    url = cp.create(stdlib_manifest("nowait"))["url"]
    pushed = cp.push(repo, "nowait", options=("nowait",))
    lines = remote_lines(pushed.stderr)
    assert lines == [
        f"paas: v1 stored ({head_of(repo)[:12]} 'slow start')",
        "paas: deploying without waiting (-o nowait): `paas status nowait` shows the outcome",
    ]
    assert cp.api("GET", "/apps/nowait/releases").json()["releases"][0]["status"] == "pending"
    wait_for(lambda: get_text(url) == "one", 60, 0.1, "the release served later")


def test_pushing_something_that_is_not_the_branch_deploys_nothing(control_plane, tmp_path):
    cp = control_plane
    repo = stdlib_app(tmp_path / "tags", "one")
    cp.create(stdlib_manifest("tags"))
    cp.push(repo, "tags")
    git("tag", "v1.0", cwd=repo)
    tagged = cp.push(repo, "tags", ref="v1.0")
    assert remote_lines(tagged.stderr) == [] and tagged.returncode == 0
    assert len(cp.api("GET", "/apps/tags/releases").json()["releases"]) == 1


def remote_tag(cp, app: str, repo, tag: str) -> str:
    out = git("ls-remote", f"{cp.url}/git/{app}.git", f"refs/tags/{tag}", cwd=repo, env=auth_env(cp.token))
    return out.stdout.split()[0] if out.stdout.strip() else ""


def test_a_pushed_tag_is_neither_deleted_nor_moved(control_plane, tmp_path):
    cp = control_plane
    repo = stdlib_app(tmp_path / "tagged", "one")
    cp.create(stdlib_manifest("tagged"))
    cp.push(repo, "tagged")
    git("tag", "v1", cwd=repo)
    assert cp.push(repo, "tagged", ref="v1").returncode == 0  # a new tag is fine
    first = head_of(repo)

    deleted = cp.push(repo, "tagged", ref=":refs/tags/v1", check=False)
    assert deleted.returncode != 0
    assert remote_lines(deleted.stderr) == [
        "paas: tag 'v1' can't be deleted: this app's tags are immutable",
        "paas: to allow deleting and moving them, set 'source: {tags: mutable}' in its manifest (paas apply)",
    ]
    assert " ! [remote rejected] v1 (deletion prohibited)" in deleted.stderr, deleted.stderr

    set_text(repo, "two")
    git("tag", "-f", "v1", cwd=repo)
    moved = cp.push(repo, "tagged", ref="+refs/tags/v1", check=False)  # git push -f paas v1
    assert moved.returncode != 0
    assert remote_lines(moved.stderr)[0] == f"paas: tag 'v1' can't be moved (it names {first[:7]}): this app's tags are immutable"
    # git's own words for a tag that exists (remote: "error: hook declined…" comes first).
    assert re.search(r"^ ! \[rejected\] +v1 -> v1 \(already exists\)$", moved.stderr, re.M), moved.stderr
    assert "hint: Updates were rejected because the tag already exists in the remote." in moved.stderr
    assert remote_tag(cp, "tagged", repo, "v1") == first

    # Pushed with the branch, the tag is refused and the branch still deploys.
    both = git("push", "--force", f"{cp.url}/git/tagged.git", "main", "v1", cwd=repo, env=auth_env(cp.token),
               check=False)
    assert both.returncode != 0 and "paas: v2 live at" in both.stderr
    assert remote_head(cp, "tagged", repo) == head_of(repo) and remote_tag(cp, "tagged", repo, "v1") == first


def test_tags_are_mutable_when_the_manifest_says_so(control_plane, tmp_path):
    cp = control_plane
    repo = stdlib_app(tmp_path / "retag", "one")
    cp.create(stdlib_manifest("retag"))
    cp.push(repo, "retag")
    git("tag", "v1", cwd=repo)
    cp.push(repo, "retag", ref="v1")
    bad = cp.api("PUT", "/apps/retag", data=stdlib_manifest("retag") + "source: {tags: sometimes}\n",
                 headers={"Content-Type": "application/yaml"})
    assert bad.status_code == 400
    assert bad.json()["details"] == ["source.tags: must be one of 'immutable' or 'mutable'"]
    assert cp.push(repo, "retag", ref=":refs/tags/v1", check=False).returncode != 0  # still immutable

    applied = cp.api("PUT", "/apps/retag", data=stdlib_manifest("retag") + "source: {tags: mutable}\n",
                     headers={"Content-Type": "application/yaml"})
    assert applied.status_code == 200, applied.text
    set_text(repo, "two")
    git("tag", "-f", "v1", cwd=repo)
    assert cp.push(repo, "retag", ref="+refs/tags/v1").returncode == 0
    assert remote_tag(cp, "retag", repo, "v1") == head_of(repo)
    assert cp.push(repo, "retag", ref=":refs/tags/v1").returncode == 0
    assert remote_tag(cp, "retag", repo, "v1") == ""
