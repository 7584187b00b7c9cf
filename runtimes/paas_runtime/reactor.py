"""A minimal epoll loop on a thread of its own: the proxy's data path.

asyncio's selector loop spends a few hundred Python function calls per
proxied connection on bookkeeping (handles, selector keys, transports); on a
two-core machine that is CPU taken straight from the app. This loop maps a
file descriptor to one callback and does nothing else, and running it on its
own thread keeps it off the supervisor's event loop (which only needs to
change where new connections go).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

Handler = Callable[[int], None]


class Timer:
    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Reactor:
    """Level-triggered epoll: ``register(fd, mask, handler)``; handler gets the event mask.

    Everything but :meth:`call_soon_threadsafe` and :meth:`stop` must be
    called on the reactor's own thread (that is, from handlers and timers).
    """

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._handlers: dict[int, Handler] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._sequence = itertools.count()
        self._calls: deque[Callable[[], None]] = deque()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="paas-proxy", daemon=True)

    def start(self) -> None:
        self.register(self._wake_r, select.EPOLLIN, self._woken)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the loop (from any thread) and wait for it; open sockets are left alone."""
        self.call_soon_threadsafe(self._set_stopping)
        self._thread.join(timeout)

    def register(self, fd: int, mask: int, handler: Handler) -> None:
        self._handlers[fd] = handler
        self._epoll.register(fd, mask)

    def modify(self, fd: int, mask: int, handler: Handler | None = None) -> None:
        if handler is not None:
            self._handlers[fd] = handler
        self._epoll.modify(fd, mask)

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd``, which stays open."""
        self._handlers.pop(fd, None)
        self._epoll.unregister(fd)

    def forget(self, fd: int) -> None:
        """Drop ``fd``'s handler before it is closed (closing removes it from epoll)."""
        self._handlers.pop(fd, None)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(time.monotonic() + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._sequence), timer))
        return timer

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        self._calls.append(callback)
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # already awake enough

    def _set_stopping(self) -> None:
        self._stopping = True

    def _woken(self, mask: int) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _run(self) -> None:
        handlers, poll = self._handlers, self._epoll.poll
        while not self._stopping:
            timeout = -1.0
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            for fd, mask in poll(timeout):
                handler = handlers.get(fd)
                if handler is not None:
                    self._call(handler, mask)
            while self._calls:
                self._call(self._calls.popleft())
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                timer = heapq.heappop(self._timers)[2]
                if not timer.cancelled:
                    self._call(timer.callback)
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    @staticmethod
    def _call(callback: Callable[..., None], *args: int) -> None:
        try:
            callback(*args)
        except Exception:  # a bug in one connection must not stop all traffic
            log.exception("internal error in the proxy")
