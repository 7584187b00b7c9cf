"""The sync loop: poll every --period, sync at once when asked, count failures, fire hooks.

Only the loop's thread touches the repository, so syncs never overlap.
`request()` (behind `POST /sync`) wakes the loop and waits for a sync that
started after the request arrived, so it sees whatever was pushed before;
requests that arrive while a sync runs share the next one. `trigger()`
(behind --sync-on-signal) asks for the same without waiting.

Until the first sync succeeds, --init-period and --init-max-failures (when
set) stand in for --period and --max-failures.
"""

import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from git_sync import logs
from git_sync.errors import SyncError
from git_sync.hooks import HookRunner
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
        init_period: float = 0.0,
        init_max_failures: int = 0,
        hooks: Sequence[HookRunner] = (),
        pre_publish: Sequence[HookRunner] = (),
        touch_file: Path | None = None,
    ) -> None:
        """`hooks` are sent each commit once it is published; `pre_publish` runners are sent
        commits by the repo, before it publishes them — both are stopped and, with
        --one-time, waited for here."""
        self._repo = repo
        self._metrics = metrics
        self._ref = ref
        self._period = period
        self._init_period = init_period or period
        self._sync_timeout = sync_timeout
        self._max_failures = max_failures
        self._init_max_failures = init_max_failures
        self._one_time = one_time
        self._hooks = list(hooks)
        self._runners = [*pre_publish, *hooks]
        self._touch_file = touch_file
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

    def trigger(self) -> None:
        """Sync as soon as possible: now, or right after the sync that is running."""
        with self._cond:
            self._requested = True
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for hook in self._runners:
            hook.stop()

    def run(self) -> int:
        """Sync until stopped (0), done with --one-time (0, or 1 if a hook failed) or
        out of failures (1)."""
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
                limit, flag = ((self._init_max_failures, "--init-max-failures")
                               if not self.ready and self._init_max_failures
                               else (self._max_failures, "--max-failures"))
                if 0 <= limit <= failures:
                    logs.error(f"sync of {self._ref} failed, giving up after {failures} "
                               f"consecutive failure(s) ({flag}={limit})", outcome,
                               failCount=failures)
                    return 1
                delay = self._period if self.ready else self._init_period
                logs.error(f"sync of {self._ref} failed ({failures} consecutive), "
                           f"retrying in {delay:g}s", outcome, failCount=failures)
                self._wait(delay, None)
                continue
            failures = 0
            stale_due = self._cleanup()
            logs.clear_error_file()
            if self._one_time:
                return self._finish_one_time()
            if outcome.hash == self._ref and _FULL_HASH.fullmatch(self._ref):
                LOG.log(V(1), "--ref is a commit hash: no more polling, only requested syncs")
                self._wait(None, stale_due)
            else:
                self._wait(self._period, stale_due)

    def _sync_once(self) -> SyncResult | SyncError:
        start = time.monotonic()
        try:
            result = self._repo.sync(start + self._sync_timeout)
        except (SyncError, OSError) as e:
            self._metrics.sync_done("error", time.monotonic() - start)
            return e if isinstance(e, SyncError) else SyncError(str(e))
        # Like upstream, the first sync of a run counts as a change even when the
        # link already pointed at the commit: hooks fire for it at start-up.
        first, self.ready = not self.ready, True
        status = "success" if result.changed or first else "noop"
        if status == "success":
            LOG.info("synced %s -> %s", self._ref, result.hash)
            self._metrics.fetched()  # upstream counts the fetches that updated, not every one
            self._touch()
            for hook in self._hooks:
                hook.send(result.hash)
        else:
            LOG.log(V(2), "no change: %s is still %s", self._ref, result.hash)
        self._metrics.sync_done(status, time.monotonic() - start)
        return result

    def _finish_one_time(self) -> int:
        failed = [hook.hook.name for hook in self._runners if not hook.wait_first()]
        if failed:
            LOG.error("exiting after one sync: %s failed", " and ".join(failed))
            return 1
        LOG.info("exiting after one sync")
        return 0

    def _touch(self) -> None:
        if self._touch_file is None:
            return
        try:
            self._touch_file.parent.mkdir(parents=True, exist_ok=True)
            self._touch_file.touch()
        except OSError as e:
            logs.error(f"can't touch --touch-file {self._touch_file}", e.strerror)

    def _cleanup(self) -> float | None:
        """Clean up after a sync; returns when the next stale worktree is due (wall clock)."""
        try:
            return self._repo.cleanup(time.monotonic() + self._sync_timeout)
        except (SyncError, OSError) as e:
            logs.error("cleanup after sync failed", e)
            return None

    def _wait(self, delay: float | None, stale_due: float | None) -> None:
        """Until `delay` passed (None: forever) or a sync is requested; meanwhile remove
        stale worktrees when they fall due."""
        end = None if delay is None else time.monotonic() + delay
        while True:
            timeout = None if end is None else end - time.monotonic()
            if stale_due is not None:
                until_due = max(stale_due - time.time(), 0.0)
                timeout = until_due if timeout is None else min(timeout, until_due)
            with self._cond:
                if self._cond.wait_for(lambda: self._requested or self._stopping, timeout):
                    return
            if end is not None and time.monotonic() >= end:
                return
            if stale_due is not None and time.time() >= stale_due:
                stale_due = self._cleanup()
