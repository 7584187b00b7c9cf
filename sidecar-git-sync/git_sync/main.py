"""Entry point: parse options, wire the parts together, run until done or signalled."""

import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from git_sync import logs, options, server
from git_sync.auth import Credentials, redact, scrub_environment
from git_sync.errors import SyncError
from git_sync.git import Git
from git_sync.logs import LOG
from git_sync.metrics import Metrics
from git_sync.repo import Repo
from git_sync.syncer import Syncer


def main(argv: Sequence[str] | None = None) -> int:
    """Run git-sync; the return value is the process's exit code."""
    try:
        opts = options.parse(sys.argv[1:] if argv is None else argv, os.environ)
    except options.EarlyExit:
        return 0
    except options.ConfigError as e:
        print(f"git-sync: error: {e}", file=sys.stderr)
        return 1
    logs.setup(opts.verbose)
    return run(opts)


def run(opts: options.Options) -> int:
    done = _Wakeup()  # before anything slow, so an early signal is not lost
    try:
        root = Path(opts.root).absolute()
        root.mkdir(parents=True, exist_ok=True)
        root = root.resolve()  # as upstream: later paths never depend on symlinks in ROOT
    except OSError as e:
        LOG.error("can't create --root %s: %s", opts.root, e.strerror)
        return 1
    metrics = Metrics()
    git = Git(opts.git, root, scrub_environment(os.environ))
    credentials = (
        Credentials(opts.repo, opts.username, opts.password, opts.password_file)
        if opts.username else None
    )
    repo = Repo(git, root, root / opts.link, opts.repo, opts.ref, opts.depth,
                credentials, opts.git_gc, on_fetch=metrics.fetched)
    syncer = Syncer(repo, metrics, ref=opts.ref, period=opts.period,
                    sync_timeout=opts.sync_timeout, max_failures=opts.max_failures,
                    one_time=opts.one_time)
    LOG.info("starting: repo %s, ref %s, root %s, link %s",
             redact(opts.repo), opts.ref, root, repo.link)
    try:
        repo.init(time.monotonic() + opts.sync_timeout)
    except (SyncError, OSError) as e:
        LOG.error("can't initialise the repository in %s: %s", root, e)
        return 1
    if opts.http_bind:
        try:
            server.serve(opts.http_bind, syncer, metrics if opts.http_metrics else None)
        except (OSError, ValueError) as e:
            LOG.error("can't serve HTTP on %s: %s", opts.http_bind, e)
            return 1
        LOG.info("serving HTTP on %s", opts.http_bind)
    return _run_until_done(syncer, git, done)


class _Wakeup:
    """Blocks the main thread until SIGTERM/SIGINT arrives or `set()` is called.

    Python runs signal handlers in the main thread only, and a main thread
    blocked on a lock never notices a signal the kernel gave to another thread;
    a read on the signal wakeup fd (which any thread's signal writes to) does.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        signal.set_wakeup_fd(self._write)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def set(self) -> None:
        os.write(self._write, b"\0")

    def wait(self) -> None:
        os.read(self._read, 1)

    @staticmethod
    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        LOG.info("received %s, exiting", signal.Signals(signum).name)


def _run_until_done(syncer: Syncer, git: Git, done: _Wakeup) -> int:
    """Run the loop in a thread, leaving this (the main) thread free to take signals."""
    exit_code = 0

    def loop() -> None:
        nonlocal exit_code
        try:
            exit_code = syncer.run()
        except Exception:  # a bug: say where, and exit non-zero
            LOG.exception("sync loop crashed")
            exit_code = 1
        finally:
            done.set()

    threading.Thread(target=loop, name="sync", daemon=True).start()
    done.wait()
    # The loop thread is a daemon: stop it where it stands rather than wait for it.
    syncer.stop()
    git.kill_all()
    return exit_code
