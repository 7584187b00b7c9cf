"""The router's head deadlines on a real reactor: each owner's expires in the order set, a
stopped or restarted one does not (or later), and a stopped owner is not kept alive."""

from __future__ import annotations

import gc
import threading
import time
import weakref

from helpers import wait_for
from paas.router.deadlines import Deadlines
from paas_runtime.reactor import Reactor


class Owner:
    def __init__(self, name: str, log: list[tuple[str, float]]) -> None:
        self.name, self.log = name, log

    def expired(self) -> None:
        self.log.append((self.name, time.monotonic()))


def _on(reactor: Reactor, call) -> None:
    """Run ``call`` on the reactor's thread (Deadlines is used from there only) and wait."""
    done = threading.Event()
    reactor.call_soon_threadsafe(lambda: (call(), done.set()))
    assert done.wait(5)


def test_deadlines_expire_in_order_unless_stopped_or_restarted():
    reactor = Reactor()
    reactor.start()
    try:
        deadlines = Deadlines(reactor, 0.3)
        log: list[tuple[str, float]] = []
        a, b, c, d = (Owner(name, log) for name in "abcd")
        start = time.monotonic()
        _on(reactor, lambda: [deadlines.start(owner) for owner in (a, b, c, d)])
        _on(reactor, lambda: (deadlines.stop(b), deadlines.start(a)))  # a again: later
        wait_for(lambda: len(log) == 3, 5, what="three deadlines")
        assert [name for name, _ in log] == ["c", "d", "a"]
        assert all(when - start >= 0.3 for _, when in log)
        assert b not in deadlines and a not in deadlines
    finally:
        reactor.stop()


def test_a_stopped_owner_is_not_kept():
    reactor = Reactor()
    reactor.start()
    try:
        deadlines = Deadlines(reactor, 60)
        owners = [Owner("gone", [])]
        ref = weakref.ref(owners[0])
        _on(reactor, lambda: deadlines.start(owners[0]))
        _on(reactor, lambda: deadlines.stop(owners[0]))
        owners.clear()
        gc.collect()
        assert ref() is None
    finally:
        reactor.stop()
