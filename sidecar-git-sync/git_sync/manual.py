"""`git-sync --man`: the manual, its OPTIONS section generated from `options.Options`."""

import textwrap

from git_sync import options

_WIDTH = 80

_HEAD = """\
GIT-SYNC

NAME
    git-sync - sync a remote git repository into a local directory

SYNOPSIS
    git-sync --repo=<repo> --root=<path> [OPTIONS]...

DESCRIPTION
    Fetch one ref of a remote git repository into a local directory, poll the
    remote for changes, and publish each new commit atomically.  Each commit is
    checked out as its own git worktree under --root; a symlink (--link) is
    then renamed over the previous one, so consumers see either the old tree
    or the new one, never a mix.  The last path component of the link's target
    is the commit hash.

    This is a drop-in for kubernetes/git-sync v4: the same flags, environment
    variables, layout, HTTP endpoint and hooks, plus POST /sync.

OPTIONS
    Every option can be given as a flag or as the environment variable shown;
    a flag wins over its variable.  Prefer flags: a misspelt flag is a fatal
    error, a misspelt variable is silently ignored.  Durations are written as
    Go durations (500ms, 10s, 1m30s).

"""

_TAIL = """\
    -h, -?, --help
            Print help text and exit.

    --man
            Print this manual and exit.

    --version
            Print the version and exit.

DEPRECATED FLAGS
    Accepted with a warning, as upstream accepts them:

{deprecated}
HOOKS
    Webhooks and exechooks run asynchronously, after the link has moved to a
    new hash, including at start-up when --root already holds the right hash.
    Each is retried after its backoff until it succeeds (exit status 0, or the
    --webhook-success-status), always with the newest hash: a hash synced
    during a backoff supersedes the one that failed.  Hooks may run more than
    once per hash and must be idempotent.  With --one-time, git-sync waits for
    the first run of each hook and exits non-zero if one failed.

HTTP
    With --http-bind: GET / answers 503 until the first sync succeeded, then
    200.  With --http-metrics, GET /metrics serves Prometheus metrics
    (git_sync_duration_seconds, git_sync_count_total, git_fetch_count_total,
    git_sync_askpass_calls, git_sync_hook_run_count_total).  With --http-pprof,
    /debug/pprof/ serves every thread's stack.  POST /sync syncs at once and
    answers {{"hash": ..., "changed": ...}} once the link points at that hash.

EXAMPLE USAGE
    git-sync \\
        --repo=https://github.com/kubernetes/git-sync \\
        --ref=HEAD \\
        --period=10s \\
        --root=/mnt/git
"""


def manual() -> str:
    entries = []
    for flag, env, default, help_text in sorted(options.describe(), key=lambda d: d[1]):
        body = f"{help_text[0].upper()}{help_text[1:]}.  Default: {default}."
        name = f"{flag}, ${env}" if flag else f"${env} (environment only)"
        entries.append(f"    {name}\n" + _indent(body, 12))
    deprecated = []
    for flag, env, advice in options.describe_deprecated():
        name = f"{flag}, ${env}" if env else flag
        deprecated.append(f"    {name}\n" + _indent(f"Deprecated: {advice}.", 12))
    return _HEAD + "\n\n".join(entries) + "\n\n" + _TAIL.format(
        deprecated="\n".join(deprecated) + "\n")


def _indent(text: str, by: int) -> str:
    return textwrap.fill(text, _WIDTH, initial_indent=" " * by, subsequent_indent=" " * by,
                         break_on_hyphens=False, break_long_words=False)
