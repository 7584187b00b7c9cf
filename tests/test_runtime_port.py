"""The public port on its own: the kernel steers new connections to one listener of the group."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from helpers import free_port, wait_for
from paas_runtime.port import PublicPort, Slot, accept_queue


@pytest.fixture
def public() -> Iterator[PublicPort]:
    port = PublicPort(free_port())
    if not port.steering:
        pytest.skip("this kernel cannot steer a reuseport group (SO_ATTACH_REUSEPORT_CBPF)")
    yield port
    port.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def queued(public: PublicPort, slots: list[Slot]) -> list[int]:
    """Accept-queue lengths: the proxy's listener first, then each slot's."""
    return [accept_queue(public.proxy_listener), *(slot.queued() for slot in slots)]


def test_new_connections_go_to_the_steered_listener_only(public):
    slots = [public.take_slot(), public.take_slot()]
    assert [slot.index for slot in slots] == [1, 2]
    clients = []
    for target, expected in ((None, [1, 0, 0]), (slots[1], [1, 0, 1]), (slots[0], [1, 1, 1])):
        public.steer(target)
        clients.append(connect(public.port))
        wait_for(lambda e=expected: queued(public, slots) == e, 5, what=f"queues {expected}")
    for client in clients:
        client.close()


def test_a_slot_keeps_its_queue_after_a_switch_and_the_proxy_salvages_it(public):
    slot = public.take_slot()
    public.steer(slot)
    waiting = connect(public.port)
    wait_for(lambda: slot.queued() == 1, 5, what="the connection queued on the slot")
    public.steer(None)
    later = connect(public.port)
    wait_for(lambda: queued(public, [slot]) == [1, 1], 5, what="one connection queued on each")

    taken = slot.salvage()
    assert len(taken) == 1 and slot.queued() == 0
    taken[0].sendall(b"from the salvaged connection")
    assert waiting.recv(100) == b"from the salvaged connection"
    for sock in (waiting, later, *taken):
        sock.close()


def test_slots_are_reused_only_once_free_so_indexes_never_move(public):
    first, second = public.take_slot(), public.take_slot()
    assert first is not None and second is not None
    assert public.take_slot().index == 3  # both busy: a new listener
    first.salvage()  # its instance is gone
    again = public.take_slot()
    assert again is first and again.index == 1
    public.steer(second)
    client = connect(public.port)
    wait_for(lambda: second.queued() == 1, 5, what="the connection on the second slot")
    client.close()
