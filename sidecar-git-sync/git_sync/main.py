"""Entry point: parse options, wire the parts together, run until done or signalled."""

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from git_sync import credential, gitconfig, logs, options, server
from git_sync.auth import Credential, Credentials, SSHConfigError, redact, scrub_environment, ssh_command
from git_sync.errors import SyncError
from git_sync.git import Git
from git_sync.hooks import Exechook, HookRunner, Webhook
from git_sync.logs import LOG
from git_sync.metrics import Metrics
from git_sync.passwd import add_user
from git_sync.repo import WORKTREES, Repo
from git_sync.syncer import Syncer

COOKIE_FILE = "/etc/git-secret/cookie_file"  # upstream's fixed path


def main(argv: Sequence[str] | None = None) -> int:
    """Run git-sync; the return value is the process's exit code."""
    warnings: list[str] = []
    try:
        opts = options.parse(sys.argv[1:] if argv is None else argv, os.environ, warnings)
    except options.EarlyExit:
        return 0
    except options.ConfigError as e:
        print(f"git-sync: error: {e}", file=sys.stderr)
        return 1
    root = Path(opts.root).absolute()
    logs.setup(opts.verbose, root / opts.error_file if opts.error_file else None)
    for warning in warnings:
        LOG.warning(warning)
    return run(opts)


def run(opts: options.Options) -> int:
    # Before anything slow, so an early signal is not lost.
    sync_signal = options.parse_signal(opts.sync_on_signal) if opts.sync_on_signal else None
    done = _Wakeup(sync_signal)
    os.umask(0o002 if opts.group_write else 0o022)
    if opts.add_user:
        try:
            if add_user():
                LOG.info("added uid %d to /etc/passwd", os.getuid())
        except OSError as e:
            logs.error("can't add user to /etc/passwd", e.strerror)
            return 1
    try:
        root = Path(opts.root).absolute()
        root.mkdir(parents=True, exist_ok=True)
        root = root.resolve()  # as upstream: later paths never depend on symlinks in ROOT
    except OSError as e:
        logs.error(f"can't create --root {opts.root}", e.strerror)
        return 1
    try:
        env = _git_environment(opts)
    except SSHConfigError as e:
        logs.error("can't set up git over SSH", e)
        return 1
    except OSError as e:
        logs.error("can't set up git's config", e)
        return 1
    token_file = os.environ.get(credential.VARIABLE, "") if opts.http_bind else ""
    try:
        secret = credential.read(token_file) if token_file else None
    except credential.CredentialError as e:
        logs.error(f"can't use ${credential.VARIABLE}", e)
        return 1
    if options.github_app_configured(opts):
        LOG.warning("GitHub app authentication is not supported by this git-sync: the "
                    "--github-app-* flags are accepted and ignored; give --username with "
                    "--password-file, or --credential, instead")
    metrics = Metrics()
    git = Git(opts.git, root, env)
    own = [Credential(opts.repo, opts.username, opts.password, opts.password_file)] if opts.username else []
    credentials = Credentials(opts.repo, [*own, *opts.credential], opts.askpass_url, metrics.askpass_done)
    pre_publish = _pre_publish_hook(opts, root, metrics.hook_done)
    repo = Repo(git, root, root / opts.link, opts.repo, opts.ref, opts.depth,
                credentials or None, opts.git_gc,
                submodules=opts.submodules, stale_timeout=opts.stale_worktree_timeout,
                filter=opts.filter, sparse_checkout_file=opts.sparse_checkout_file,
                before_publish=pre_publish.send if pre_publish else lambda commit: None)
    hooks = _hooks(opts, repo, metrics.hook_done)
    syncer = Syncer(repo, metrics, ref=opts.ref, period=opts.period,
                    init_period=opts.init_period, sync_timeout=opts.sync_timeout,
                    max_failures=opts.max_failures, init_max_failures=opts.init_max_failures,
                    one_time=opts.one_time, hooks=hooks, pre_publish=[pre_publish] if pre_publish else [],
                    touch_file=root / opts.touch_file if opts.touch_file else None)
    done.on_sync_signal = syncer.trigger
    LOG.info("starting: repo %s, ref %s, root %s, link %s",
             redact(opts.repo), opts.ref, root, repo.link)
    try:
        repo.init(time.monotonic() + opts.sync_timeout)
    except (SyncError, OSError) as e:
        logs.error(f"can't initialise the repository in {root}", e)
        return 1
    if opts.http_bind:
        try:
            server.serve(opts.http_bind, syncer, metrics if opts.http_metrics else None, opts.http_pprof, secret)
        except (OSError, ValueError) as e:
            logs.error(f"can't serve HTTP on {opts.http_bind}", e)
            return 1
        LOG.info("serving HTTP on %s", opts.http_bind)
    for hook in [*hooks, *([pre_publish] if pre_publish else [])]:
        hook.start()
    return _run_until_done(syncer, git, done)


def _git_environment(opts: options.Options) -> dict[str, str]:
    """What every git child gets: our environment minus secrets, private config, ssh."""
    env = scrub_environment(os.environ)
    cookies = []
    if opts.cookie_file:
        if not os.access(COOKIE_FILE, os.R_OK):
            raise OSError(f"can't access git cookiefile {COOKIE_FILE}")
        cookies = [("http.cookiefile", COOKIE_FILE)]
    pairs = [*gitconfig.DEFAULTS, *cookies, *gitconfig.parse(opts.git_config)]
    env.update(gitconfig.private_global(opts.git, pairs, env))
    env["GIT_SSH_COMMAND"] = ssh_command(
        opts.ssh_key_file, opts.ssh_known_hosts, opts.ssh_known_hosts_file,
        required=options.is_ssh_url(opts.repo), default_key_files=[options.DEFAULT_SSH_KEY_FILE],
    )
    return env


def _pre_publish_hook(opts: options.Options, root: Path,
                      on_done: Callable[[str, str], None]) -> HookRunner | None:
    if not opts.pre_publish_exechook_command:
        return None
    exechook = Exechook(opts.pre_publish_exechook_command, lambda commit: root / WORKTREES / commit,
                        opts.pre_publish_exechook_timeout, os.environ, name="pre-publish-exechook")
    return HookRunner(exechook, opts.pre_publish_exechook_backoff, on_done)


def _hooks(opts: options.Options, repo: Repo,
           on_done: Callable[[str, str], None]) -> list[HookRunner]:
    hooks = []
    if opts.webhook_url:
        webhook = Webhook(opts.webhook_url, opts.webhook_method, opts.webhook_success_status,
                          opts.webhook_timeout)
        hooks.append(HookRunner(webhook, opts.webhook_backoff, on_done))
    if opts.exechook_command:
        exechook = Exechook(opts.exechook_command, repo.worktree, opts.exechook_timeout,
                            os.environ)
        hooks.append(HookRunner(exechook, opts.exechook_backoff, on_done))
    return hooks


class _Wakeup:
    """Blocks the main thread until SIGTERM/SIGINT arrives or `set()` is called.

    Python runs signal handlers in the main thread only, and a main thread
    blocked on a lock never notices a signal the kernel gave to another thread;
    a read on the signal wakeup fd (which any thread's signal writes to) does.
    The --sync-on-signal signal writes there too; it only triggers a sync.
    """

    _DONE = 0

    def __init__(self, sync_signal: signal.Signals | None) -> None:
        self.on_sync_signal: Callable[[], None] | None = None
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_exit_signal)
        signal.signal(signal.SIGINT, self._on_exit_signal)
        if sync_signal is not None and sync_signal not in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sync_signal, self._on_sync_signal)

    def set(self) -> None:
        os.write(self._write, bytes([self._DONE]))

    def wait(self) -> None:
        while os.read(self._read, 1)[0] not in (self._DONE, signal.SIGTERM, signal.SIGINT):
            pass  # the sync signal: its handler has run already

    @staticmethod
    def _on_exit_signal(signum: int, _frame: FrameType | None) -> None:
        LOG.info("received %s, exiting", signal.Signals(signum).name)

    def _on_sync_signal(self, signum: int, _frame: FrameType | None) -> None:
        LOG.info("received %s, syncing", signal.Signals(signum).name)
        if self.on_sync_signal is not None:
            self.on_sync_signal()


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
