"""Git's pkt-line framing as the push view reads receive-pack's answer and writes its own
(`paas.server.pktline`): bytes in, packets and reports out, whole or cut short, framed with
side-band or without, and what is not pkt-line refused as such. No git, no sockets."""

from __future__ import annotations

import io

import pytest

from paas.server import pktline
from paas.server.pktline import FLUSH, MAX_DATA, Answer, ProtocolError, encode

REPORT = ["unpack ok", "ok refs/heads/main", "option refname refs/heads/main", "ok refs/tags/v1"]


def answer(data: bytes) -> tuple[list[bytes], Answer]:
    """What ``read_answer`` passes on as it reads ``data``, and the answer it returns."""
    passed: list[bytes] = []
    reader = pktline.read_answer(io.BytesIO(data))
    try:
        while True:
            passed.append(next(reader))
    except StopIteration as done:
        return passed, done.value


def sideband(band: int, payload: bytes) -> bytes:
    return encode(bytes([band]) + payload)


def test_packets_and_flushes_are_read_as_they_were_framed():
    data = encode(b"one\n") + FLUSH + encode(b"") + b"0001" + encode(b"two")
    assert list(pktline.packets(io.BytesIO(data))) == [b"one\n", None, b"", None, b"two"]
    assert encode(b"x" * 10) == b"000e" + b"x" * 10


@pytest.mark.parametrize(("data", "reason"), [
    (b"00", "truncated pkt-line length"),
    (b"000aabc", "truncated pkt-line"),
    (b"zzzz", "bad pkt-line length b'zzzz'"),
    (b"+00a123456", "bad pkt-line length b'+00a'"),
    (b"0x1f" + b"a" * 27, "bad pkt-line length b'0x1f'"),
    (b"0003rest of the stream", "bad pkt-line length b'0003'"),  # shorter than its own length
])
def test_what_is_not_a_pkt_line_is_refused(data, reason):
    with pytest.raises(ProtocolError, match=f"^{reason.replace('+', '[+]')}$"):
        list(pktline.packets(io.BytesIO(data)))


def test_a_report_without_side_band_is_read_line_by_line():
    passed, got = answer(pktline.join_report(REPORT))
    assert passed == [] and got == Answer(sideband=False, report=REPORT)
    assert pktline.finish(got) == pktline.join_report(REPORT)


def test_with_side_band_progress_is_passed_on_at_once_and_the_report_held_back_even_split_across_packets():
    report = pktline.join_report(REPORT)
    data = (sideband(2, b"Resolving deltas: 100%\n") + sideband(1, report[:7]) + sideband(2, b"more\n")
            + sideband(1, report[7:]) + FLUSH)
    passed, got = answer(data)
    assert passed == [sideband(2, b"Resolving deltas: 100%\n"), sideband(2, b"more\n")]
    assert got == Answer(sideband=True, report=REPORT)
    assert pktline.finish(got) == sideband(1, report) + FLUSH


def test_a_garbled_report_inside_the_side_band_is_refused_not_misread():
    for report in (b"zzzzunpack ok\n", b"0030unpack ok\n", b"0003"):
        with pytest.raises(ProtocolError):
            answer(sideband(1, report) + FLUSH)


def test_a_report_longer_than_a_packet_is_split_into_side_band_packets_git_reads_back():
    lines = [f"ng refs/heads/b{i} {'x' * 200}" for i in range(400)]
    framed = pktline.finish(Answer(sideband=True, report=lines))
    packets = list(pktline.packets(io.BytesIO(framed)))
    assert packets[-1] is None and all(len(p) <= MAX_DATA and p[0] == 1 for p in packets[:-1]) and len(packets) > 2
    assert answer(framed)[1].report == lines


def test_progress_is_one_band_2_packet_per_line_each_within_the_largest_packet():
    assert pktline.progress("one\ntwo") == sideband(2, b"one\n") + sideband(2, b"two\n")
    assert pktline.progress("") == sideband(2, b"\n")
    [long] = list(pktline.packets(io.BytesIO(pktline.progress("é" * MAX_DATA))))
    assert len(long) == MAX_DATA and long.endswith(b"\n")


def test_a_ref_refused_or_failed_reads_as_git_says_it():
    assert pktline.reject(REPORT, "refs/heads/main", "deploy failed") == [
        "unpack ok", "ng refs/heads/main deploy failed", "ok refs/tags/v1",  # its options go with its ok
    ]
    assert pktline.reject(REPORT, "refs/heads/other", "x") == REPORT
    refused = ["unpack ok", "ng refs/heads/main pre-receive hook declined"]
    assert pktline.reword(refused, "refs/heads/main", "tags are immutable") == ["unpack ok", "ng refs/heads/main tags are immutable"]
