"""The sync loop: poll every --period, sync at once when asked, count failures.

Only the loop's thread touches the repository, so syncs never overlap.
`request()` (behind `POST /sync`) wakes the loop and waits for a sync that
started after the request arrived, so it sees whatever was pushed before;
requests that arrive while a sync runs share the next one.
"""

import re
import threading
import time

from git_sync.errors import SyncError
from git_sync.logs import LOG, V
from git_sync.metrics import Metrics
from git_sync.repo import Repo, SyncResult

_FULL_HASH = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


class Stopped(SyncError):
    """git-sync is shutting down; the requested sync will not run."""

    http_status = 503


class Syncer:
    def __init__(
        self,
        repo: Repo,
        metrics: Metrics,
        *,
        ref: str,
        period: float,
        sync_timeout: float,
        max_failures: int,
        one_time: bool,
    ) -> None:
        self._repo = repo
        self._metrics = metrics
        self._ref = ref
        self._period = period
        self._sync_timeout = sync_timeout
        self._max_failures = max_failures
        self._one_time = one_time
        self._cond = threading.Condition()
        self._requested = False
        self._stopping = False
        self._started = 0
        self._finished = 0
        self._outcome: SyncResult | SyncError | None = None
        self.ready = False  # a sync has succeeded: `GET /` answers 200

    def request(self) -> SyncResult:
        """The result of a sync that starts after this call; raises its SyncError."""
        with self._cond:
            ticket = self._started + 1
            self._requested = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._finished >= ticket or self._stopping)
            if self._finished < ticket:
                raise Stopped("git-sync is shutting down")
            outcome = self._outcome
        if isinstance(outcome, SyncError):
            raise outcome
        assert outcome is not None
        return outcome

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def run(self) -> int:
        """Sync until stopped (0), done with --one-time (0) or out of failures (1)."""
        try:
            return self._loop()
        finally:
            self.stop()  # release any request still waiting, whatever ended the loop

    def _loop(self) -> int:
        failures = 0
        while True:
            with self._cond:
                if self._stopping:
                    return 0
                self._requested = False
                self._started += 1
            outcome = self._sync_once()
            with self._cond:
                self._finished += 1
                self._outcome = outcome
                self._cond.notify_all()
                if self._stopping:
                    return 0
            if isinstance(outcome, SyncError):
                failures += 1
                if 0 <= self._max_failures <= failures:
                    LOG.error("sync of %s failed, giving up after %d consecutive failure(s) "
                              "(--max-failures=%d): %s",
                              self._ref, failures, self._max_failures, outcome)
                    return 1
                LOG.error("sync of %s failed (%d consecutive), retrying in %gs: %s",
                          self._ref, failures, self._period, outcome)
                self._wait(self._period)
                continue
            failures = 0
            self._cleanup()
            if self._one_time:
                return 0
            if outcome.hash == self._ref and _FULL_HASH.fullmatch(self._ref):
                LOG.log(V(1), "--ref is a commit hash: no more polling, only requested syncs")
                self._wait(None)
            else:
                self._wait(self._period)

    def _sync_once(self) -> SyncResult | SyncError:
        start = time.monotonic()
        try:
            result = self._repo.sync(start + self._sync_timeout)
        except (SyncError, OSError) as e:
            self._metrics.sync_done("error", time.monotonic() - start)
            return e if isinstance(e, SyncError) else SyncError(str(e))
        # Like upstream, the first sync of a run counts as a change even when the
        # link already pointed at the commit.
        first, self.ready = not self.ready, True
        status = "success" if result.changed or first else "noop"
        self._metrics.sync_done(status, time.monotonic() - start)
        if status == "success":
            LOG.info("synced %s -> %s", self._ref, result.hash)
        else:
            LOG.log(V(2), "no change: %s is still %s", self._ref, result.hash)
        return result

    def _cleanup(self) -> None:
        try:
            self._repo.cleanup(time.monotonic() + self._sync_timeout)
        except (SyncError, OSError) as e:
            LOG.error("cleanup after sync failed: %s", e)

    def _wait(self, timeout: float | None) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._requested or self._stopping, timeout)
