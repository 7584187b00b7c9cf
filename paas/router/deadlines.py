"""When the head each connection is reading must be whole: one timer for all of a router's
connections, not one each.

A cancelled reactor timer stays in the reactor's heap, with its callback and so its
connection, until it would have fired: with a timer per connection, a router taking
thousands of connections a second would hold tens of thousands of finished ones for the
whole timeout. Every deadline here is the same time from when it was set, so they come due
in the order they were set: an ordered dict is the queue, and only its first entry has a
timer.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol

from paas_runtime.reactor import Reactor, Timer


class Expiring(Protocol):
    def expired(self) -> None: ...


class Deadlines:
    def __init__(self, reactor: Reactor, timeout: float) -> None:
        self._reactor = reactor
        self.timeout = timeout
        self._due: OrderedDict[Expiring, float] = OrderedDict()
        self._timer: Timer | None = None

    def __contains__(self, owner: Expiring) -> bool:
        return owner in self._due

    def start(self, owner: Expiring) -> None:
        """Call ``owner.expired()`` :attr:`timeout` from now, unless stopped (or started again) first."""
        self._due.pop(owner, None)
        self._due[owner] = time.monotonic() + self.timeout
        if self._timer is None:
            self._timer = self._reactor.call_later(self.timeout, self._expire)

    def stop(self, owner: Expiring) -> None:
        self._due.pop(owner, None)

    def _expire(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self._due:
            owner, when = next(iter(self._due.items()))
            if when > now:
                self._timer = self._reactor.call_later(when - now, self._expire)
                return
            del self._due[owner]
            owner.expired()
