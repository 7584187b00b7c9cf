"""The reconciler's decisions as functions of (desired, observed), fed data as the pass sees
it: whether a pod must be (re)applied, which documents are due to which container, which
release a serving or failed revision belongs to, and which pending release a failure ends.
No store, no backend, no processes."""

from __future__ import annotations

import pytest

from paas import podspec, store
from paas.appspec import Platform, resolve
from paas.backends.base import ContainerStatus, PodStatus
from paas.manifest import parse
from paas.reconciler import _release_of, failed_release, pushes_due
from paas.runtime_status import parse as runtime_status
from paas.store import App, Release

PLATFORM = Platform("http://cp")
SPEC = podspec.build(resolve(App("shop", parse("name: shop\nsidecars: [config]\n"), 8100, "t", 0.0), PLATFORM), PLATFORM)


def observed(states: dict[str, str] | None = None, digest: str = SPEC.digest, statuses: dict | None = None) -> PodStatus:
    states = {c.name: "running" for c in SPEC.containers} if states is None else states
    return PodStatus("shop", digest, [ContainerStatus(name, state) for name, state in states.items()], statuses or {})


def release(number: int, revision: str, status: str = store.PENDING, config: int = 0) -> Release:
    return Release("shop", number, revision, status, "", 0.0, 0.0, config=config)


# -- apply or leave --------------------------------------------------------------------------

def test_a_pod_is_left_alone_only_when_it_was_made_from_the_spec_and_all_of_it_runs():
    assert observed().matches(SPEC)
    assert not observed(digest="another").matches(SPEC)  # the spec changed: replaced
    assert not observed({**{c.name: "running" for c in SPEC.containers}, "config": "exited"}).matches(SPEC)
    assert not observed({"git-sync": "running", "runtime": "running"}).matches(SPEC)  # a container missing
    assert not observed({}).matches(SPEC)


# -- documents delivered -----------------------------------------------------------------------

def due(pod: PodStatus) -> list[tuple[str, str]]:
    return [(container.name, push.path) for container, push in pushes_due(SPEC, pod)]


def test_each_document_is_due_to_a_running_container_until_it_reports_the_version():
    settings = SPEC.role("runtime").pushes[0]
    assert due(observed()) == [("runtime", "/settings"), ("config", "/config")]  # nothing reported yet
    told = {"runtime": {"received": settings.version}, "config": {"version": 0}}
    assert due(observed(statuses=told)) == []
    assert due(observed(statuses=told | {"config": {"version": 7}})) == [("config", "/config")]
    assert due(observed(statuses=told | {"runtime": {"received": "older"}})) == [("runtime", "/settings")]


def test_no_document_is_due_to_a_container_that_does_not_run():
    states = {c.name: "running" for c in SPEC.containers} | {"config": "restarting"}
    assert due(observed(states)) == [("runtime", "/settings")]


# -- which release a revision is -------------------------------------------------------------

RELEASES = [  # newest first, as the store lists them
    release(5, "bbb", store.FAILED, config=2),
    release(4, "bbb", store.LIVE, config=1),
    release(3, "aaa", store.SUPERSEDED, config=1),
    release(2, "aaa", store.SUPERSEDED),
]


@pytest.mark.parametrize(("revision", "config", "ended", "number"), [
    ("bbb", 2, True, 5),      # exactly that revision and config
    ("bbb", 2, False, None),  # ... but it failed: no release that may serve
    ("bbb", 1, False, 4),
    ("aaa", 1, True, 3),
    ("aaa", 9, True, 2),      # an unknown config: the release stored before config versions
    ("ccc", 0, True, None),
])
def test_a_revision_and_config_belong_to_the_newest_release_of_them(revision, config, ended, number):
    found = _release_of(RELEASES, revision, config, ended)
    assert (found.number if found else None) == number


def test_a_failure_ends_the_pending_release_of_the_failed_revision_only():
    pending = [release(6, "ccc", config=2), *RELEASES]

    def ended(**state) -> int | None:
        found = failed_release(pending, runtime_status(state))
        return found.number if found else None

    failure = {"revision": "ccc", "reason": "boom", "config_version": 2}
    assert ended(serving="bbb", config_version=1, failed=failure) == 6
    assert ended(serving="bbb", config_version=1) is None  # nothing failed
    assert ended(serving="ccc", config_version=2, failed=failure) is None  # it serves after all
    assert ended(serving="bbb", config_version=1, failed=failure | {"config_version": 1}) is None  # with another config: no release of it
    assert ended(serving="bbb", config_version=1, failed={"revision": "bbb", "config_version": 2}) is None  # v5 ended already
    assert ended(serving="bbb", config_version=1, failed={"revision": "", "reason": "?"}) is None
