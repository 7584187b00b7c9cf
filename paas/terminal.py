"""An app's output made safe to print on a person's terminal.

What an app prints reaches `paas logs` byte for byte, and a terminal obeys the control
sequences in it: an app could retitle the window (OSC 0), clear the screen (CSI 2J), hide
or rewrite lines, or, on some terminals, have text typed back. So the CLI strips every
escape sequence (CSI, OSC, DCS, SOS, PM, APC and the shorter ESC ones, in their 7-bit and
8-bit forms) and every other C0 and C1 control character but tab before it prints a line;
`--raw` prints the lines as the app wrote them.
"""

from __future__ import annotations

import re

_SEQUENCE = re.compile(
    r"""
      (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]?                          # CSI: parameters, intermediates, final
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]) .*? (?:\x07|\x1b\\|\x9c|\Z)  # OSC, DCS, SOS, PM, APC to their end
    | \x1b [ -/]* [0-~]?                                            # any other escape sequence
    """,
    re.VERBOSE | re.DOTALL,
)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # C0 but tab, DEL, C1


def clean(line: str) -> str:
    """``line`` without escape sequences and control characters (tabs kept)."""
    return _CONTROL.sub("", _SEQUENCE.sub("", line))
