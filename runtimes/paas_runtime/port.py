"""The public port: listeners in one ``SO_REUSEPORT`` group, the kernel steering to one of them.

Every listener bound to ``PORT`` is in one reuseport group, and a one-instruction
classic BPF program attached to the group (``SO_ATTACH_REUSEPORT_CBPF``) picks
which listener each new connection goes to. Listener 0 is the supervisor's own
(its proxy); each app instance gets a *slot*, a listener of its own whose file
descriptor it inherits and accepts on directly. Switching traffic is replacing
the program: connections already queued on a listener stay there, so a slot
that traffic has left drains its queue, and whatever is left in it when its
instance is gone is taken over by the proxy (:meth:`Slot.salvage`).

The kernel numbers a group's listeners in the order they started listening and,
when one closes, moves the last into its place. Slots are therefore never
closed while the supervisor runs, only reused once their instance has stopped,
so every index stays what it was when the slot was made.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import socket
import struct

from .errors import ListenFailed

log = logging.getLogger(__name__)

#: From <asm-generic/socket.h>; Linux 4.5 and later.
SO_ATTACH_REUSEPORT_CBPF = 51
#: ``BPF_RET | BPF_K``: return the constant, the index of the chosen listener.
_BPF_RET_K = 0x06
BACKLOG = 1024
#: ``struct tcp_info`` offset of ``tcpi_unacked``, which for a listener is its accept-queue length.
_TCPI_UNACKED = 24


def accept_queue(listener: socket.socket) -> int:
    """Connections waiting in ``listener``'s accept queue."""
    info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("I", info, _TCPI_UNACKED)[0]


class Slot:
    """One app instance's listener in the group; ``index`` is its place there."""

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock = sock
        self.index = index
        self.busy = False

    @property
    def fd(self) -> int:
        return self.sock.fileno()

    def queued(self) -> int:
        """Connections waiting in this listener's accept queue."""
        return accept_queue(self.sock)

    def salvage(self) -> list[socket.socket]:
        """Accept what is left in the queue (its instance is gone); the slot is free again."""
        taken: list[socket.socket] = []
        while True:
            try:
                client, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue  # the client gave up meanwhile
            client.setblocking(False)
            taken.append(client)
        self.busy = False
        return taken


class PublicPort:
    """``PORT`` on every address; :meth:`steer` says which listener takes new connections."""

    def __init__(self, port: int, host: str = "") -> None:
        """``host``: the address to listen on ("" for every address, IPv4 and IPv6 where possible)."""
        self.port, self.host = port, host
        if host:
            self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        else:
            self._family = socket.AF_INET6 if socket.has_dualstack_ipv6() else socket.AF_INET
        #: The supervisor's own listener: index 0 in the group.
        self.proxy_listener = self._listener()
        self._slots: list[Slot] = []
        self.steered: Slot | None = None
        #: Whether the kernel can steer; without it every connection goes through the proxy.
        self.steering = self._attach(0)

    def _listener(self) -> socket.socket:
        try:
            sock = socket.socket(self._family, socket.SOCK_STREAM)
            if self._family == socket.AF_INET6 and not self.host:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self.port))
            sock.listen(BACKLOG)
        except OSError as e:
            reason = os.strerror(e.errno) if e.errno else str(e)
            where = f"{self.host}:{self.port}" if self.host else f"port {self.port}"
            raise ListenFailed(f"cannot listen on {where}: {reason}") from e
        sock.setblocking(False)
        return sock

    def _attach(self, index: int) -> bool:
        program = ctypes.create_string_buffer(struct.pack("HBBI", _BPF_RET_K, 0, 0, index))
        fprog = struct.pack("HL", 1, ctypes.addressof(program))
        try:
            self.proxy_listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
        except OSError as e:
            log.info("the kernel cannot steer the port's connections (%s): all traffic goes through the proxy", e)
            return False
        return True

    def take_slot(self) -> Slot | None:
        """A listener for a new instance (None if the kernel cannot steer to it)."""
        if not self.steering:
            return None
        slot = next((s for s in self._slots if not s.busy), None)
        if slot is None:
            slot = Slot(self._listener(), len(self._slots) + 1)
            self._slots.append(slot)
        slot.busy = True
        return slot

    def steer(self, slot: Slot | None) -> None:
        """Send new connections to ``slot``'s instance, or (None) to the proxy."""
        if self.steering and self._attach(slot.index if slot is not None else 0):
            self.steered = slot

    def close(self) -> None:
        for slot in self._slots:
            slot.sock.close()
        with contextlib.suppress(OSError):
            self.proxy_listener.close()
