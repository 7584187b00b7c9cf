"""Git's pkt-line framing, as much of it as a push's answer needs.

``git receive-pack`` answers a push with its report (``unpack ok``, ``ok <ref>`` or
``ng <ref> <reason>`` per ref). With the ``side-band-64k`` capability (every git since
1.6 asks for it) the answer is multiplexed: band 1 carries the report, itself pkt-lines,
band 2 progress text (git prints it as ``remote: …``), band 3 a fatal error. The push
view holds the report back, adds the deploy's progress on band 2, and only then sends the
report — rewritten to ``ng`` when the deploy failed, which makes ``git push`` fail.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import IO

FLUSH = b"0000"
MAX_DATA = 65516  # largest pkt payload: 65520 less the 4-byte length
DATA, PROGRESS, ERROR = 1, 2, 3
_HEX = frozenset(b"0123456789abcdefABCDEF")


class ProtocolError(Exception):
    pass


def encode(payload: bytes) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload


def _length(head: bytes) -> int:
    """A pkt-line's length from its 4 hex digits: 0-2 (flush, delimiter, response-end) or the
    whole packet's, 4 and more."""
    if len(head) < 4:
        raise ProtocolError("truncated pkt-line length")
    if not set(head) <= _HEX:  # int(..., 16) would take "+003", " 12f" and "0x1f"
        raise ProtocolError(f"bad pkt-line length {head!r}")
    length = int(head, 16)
    if length == 3:
        raise ProtocolError(f"bad pkt-line length {head!r}")
    return length


def packets(stream: IO[bytes]) -> Iterator[bytes | None]:
    """Each pkt-line's payload from ``stream``; None for a flush packet."""
    while True:
        head = stream.read(4)
        if not head:
            return
        length = _length(head)
        if length < 4:  # flush, delimiter, response-end
            yield None
            continue
        payload = stream.read(length - 4)
        if len(payload) < length - 4:
            raise ProtocolError("truncated pkt-line")
        yield payload


def split_report(data: bytes) -> list[str]:
    """The report's lines (``unpack ok``, ``ok refs/heads/main``, …) from its pkt-lines."""
    lines, offset = [], 0
    while offset < len(data):
        length = _length(data[offset : offset + 4])
        if length < 4:
            offset += 4
            continue
        if offset + length > len(data):
            raise ProtocolError("truncated pkt-line in the report")
        lines.append(data[offset + 4 : offset + length].decode("utf-8", "replace").rstrip("\n"))
        offset += length
    return lines


def join_report(lines: list[str]) -> bytes:
    return b"".join(encode(line.encode() + b"\n") for line in lines) + FLUSH


@dataclass
class Answer:
    """receive-pack's answer once read: how it was framed, and its report."""

    sideband: bool = False
    report: list[str] = field(default_factory=list)


def read_answer(stream: IO[bytes]) -> Generator[bytes, None, Answer]:
    """Read receive-pack's answer, yielding its own progress packets as they come; return
    the answer (``answer = yield from read_answer(stream)``)."""
    answer = Answer()
    report = bytearray()
    first = True
    for payload in packets(stream):
        if payload is None:
            if answer.sideband or not first:
                break
            continue
        if first:
            answer.sideband = payload[:1] in (b"\x01", b"\x02", b"\x03")
            first = False
        if not answer.sideband:
            answer.report.append(payload.decode("utf-8", "replace").rstrip("\n"))
        elif payload[0] == DATA:
            report += payload[1:]
        else:
            yield encode(payload)
    if answer.sideband:
        answer.report = split_report(bytes(report))
    return answer


def progress(text: str) -> bytes:
    """Band-2 packets for ``text``, one per line (git shows each as ``remote: <line>``)."""
    out = b""
    for line in text.splitlines() or [""]:
        data = line.encode("utf-8", "replace")[: MAX_DATA - 2]
        out += encode(bytes([PROGRESS]) + data + b"\n")
    return out


def finish(answer: Answer) -> bytes:
    """The (possibly rewritten) report and the closing flush, framed as the client asked."""
    report = join_report(answer.report)
    if not answer.sideband:
        return report
    framed = b"".join(
        encode(bytes([DATA]) + report[i : i + MAX_DATA - 1]) for i in range(0, len(report), MAX_DATA - 1)
    )
    return framed + FLUSH


def reword(lines: list[str], ref: str, reason: str) -> list[str]:
    """The report with ``ref``'s refusal (``ng <ref> …``) giving ``reason`` instead."""
    return [f"ng {ref} {reason}" if line.startswith(f"ng {ref} ") else line for line in lines]


def reject(lines: list[str], ref: str, reason: str) -> list[str]:
    """The report with ``ref``'s ``ok`` turned into ``ng <ref> <reason>`` (its options dropped)."""
    out, dropping = [], False
    for line in lines:
        if line == f"ok {ref}":
            out.append(f"ng {ref} {reason}")
            dropping = True
        elif dropping and line.startswith("option "):
            continue
        else:
            dropping = False
            out.append(line)
    return out
