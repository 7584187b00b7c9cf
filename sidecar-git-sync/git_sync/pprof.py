"""`--http-pprof`: Python's answer to upstream's Go `net/http/pprof` endpoints.

Go serves profiles of its runtime under `/debug/pprof/`; the ones that mean something
for a Python process are served here as text: the stack of every thread (Go's
goroutine profile; `?debug=2` in Go gives the same full stacks), the command line
(credentials redacted) and an index. Other profile names answer 404 saying what there is.
"""

import sys
import threading
import traceback

from git_sync.auth import redact

PREFIX = "/debug/pprof/"
PROFILES = {
    "goroutine": "the stack of every thread (Go's goroutines; the same with ?debug=1 or 2)",
    "threadcreate": "the same stacks (Python threads are what Go would count here)",
    "cmdline": "the command line, NUL-separated, credentials redacted",
}


def answer(path: str) -> tuple[int, bytes]:
    """(status, text body) for a request under PREFIX (or PREFIX without its slash)."""
    name = path[len(PREFIX):] if path.startswith(PREFIX) else ""
    if name == "":
        lines = ["/debug/pprof/", "", "profiles:"] + [f"  {n}: {what}" for n, what in PROFILES.items()]
        return 200, ("\n".join(lines) + "\n").encode()
    if name in ("goroutine", "threadcreate"):
        return 200, stacks().encode()
    if name == "cmdline":
        return 200, "\0".join(_redacted(arg) for arg in sys.argv).encode()
    return 404, f"unknown profile {name!r}; there are: {', '.join(PROFILES)}\n".encode()


def stacks() -> str:
    """Every thread's stack, most recent call last, as `goroutine … [running]:` blocks."""
    names = {t.ident: t.name for t in threading.enumerate()}
    frames = sys._current_frames()
    blocks = [f"threads: {len(frames)}\n"]
    for ident, frame in frames.items():
        stack = "".join(traceback.format_stack(frame))
        blocks.append(f"thread {ident} ({names.get(ident, '?')}) [running]:\n{stack}")
    return "\n".join(blocks)


def _redacted(arg: str) -> str:
    if arg.startswith("--password=") or arg.startswith("--__env__GITSYNC_PASSWORD="):
        return arg.split("=", 1)[0] + "=REDACTED"
    return redact(arg)
