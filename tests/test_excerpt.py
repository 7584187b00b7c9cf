"""What a failed push shows of a long failure: the tail, led by the app's own exception."""

from __future__ import annotations

from paas.status import excerpt

FRAME = ['  File "/app/app.py", line 12, in <module>', '    raise RuntimeError("oops")', "RuntimeError: oops"]


def test_an_exception_buried_under_a_servers_shutdown_lines_leads_the_excerpt():
    lines = ["Traceback (most recent call last):", *FRAME] + [f"[INFO] shutting down {i}" for i in range(20)]
    shown = excerpt(lines, keep=5)
    assert shown == [*FRAME, "…", *lines[-5:]]


def test_a_short_output_is_shown_whole_and_a_tail_holding_the_exception_is_left_as_is():
    assert excerpt(FRAME, keep=5) == FRAME
    lines = [f"line {i}" for i in range(10)] + FRAME
    assert excerpt(lines, keep=5) == lines[-5:]


def test_without_an_exception_it_is_the_tail():
    lines = [f"npm ERR! line {i}" for i in range(30)]
    assert excerpt(lines, keep=4) == lines[-4:]
