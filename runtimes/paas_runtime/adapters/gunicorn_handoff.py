"""paas-runtime's handoff adapter for gunicorn (see paas_runtime/handoff.py).

Copied into every venv the python runtime builds, as ``_paas_handoff.py``, and
imported at interpreter start by ``_paas_handoff.pth`` beside it. Outside a
paas-runtime instance (no ``PAAS_PUBLIC_PORT``) it does nothing. Inside one it
waits for ``gunicorn.arbiter`` to be imported and wraps ``Arbiter.start``:

* before gunicorn binds, an address on every interface at the instance's
  private ``$PORT`` (gunicorn's default once ``PORT`` is set is ``0.0.0.0``)
  becomes loopback: the private port is the supervisor's, never the network's;
* once gunicorn has its own listeners, the public port's slot (``PAAS_LISTEN_FD``)
  is added to them, before any worker is forked, so every worker accepts on both.

Only the sync worker takes the slot: it answers one request per connection,
so once the supervisor has seen its last connection close, stopping it closes
no connection a client is about to reuse. Other worker classes keep
connections alive and are served through the supervisor's proxy, which moves
those between requests.
"""

import os
import sys

_EVERY_ADDRESS = ("", "0.0.0.0", "::", "[::]")


def _install() -> None:
    if not os.environ.get("PAAS_PUBLIC_PORT"):
        return
    listen_fd = os.environ.get("PAAS_LISTEN_FD")
    control_fd = os.environ.get("PAAS_CONTROL_FD")

    import importlib.abc
    import importlib.machinery

    class _ArbiterFinder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "gunicorn.arbiter":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return spec
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                _wrap_start(module.Arbiter, listen_fd, control_fd)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _ArbiterFinder())


def _wrap_start(arbiter_class, listen_fd, control_fd):
    start = arbiter_class.start

    def start_and_take_the_public_port(arbiter):
        _private_on_loopback(arbiter.cfg, os.environ.get("PORT", ""))
        start(arbiter)
        # Processes this gunicorn starts (its workers are forks) must not take it again.
        os.environ.pop("PAAS_LISTEN_FD", None)
        os.environ.pop("PAAS_CONTROL_FD", None)
        if listen_fd and control_fd:
            _take(arbiter, int(listen_fd), int(control_fd))

    arbiter_class.start = start_and_take_the_public_port


def _private_on_loopback(cfg, port):
    binds = []
    for bind in cfg.bind:
        host, _, bound = bind.rpartition(":")
        binds.append(f"127.0.0.1:{port}" if bound == port and host in _EVERY_ADDRESS else bind)
    cfg.set("bind", binds)


def _take(arbiter, listen_fd, control_fd):
    import socket

    from gunicorn import sock
    from gunicorn.workers.sync import SyncWorker

    def tell(line):
        try:
            os.write(control_fd, line.encode() + b"\n")
        except OSError:
            pass

    if not issubclass(arbiter.worker_class, SyncWorker):
        return tell(f"declined the {arbiter.cfg.worker_class_str} worker keeps connections alive")
    if arbiter.cfg.reuse_port:
        return tell("declined gunicorn binds its own sockets with --reuse-port")
    try:
        probe = socket.socket(fileno=os.dup(listen_fd))
        family, address = probe.family, probe.getsockname()
        probe.close()
        kind = sock.TCP6Socket if family == socket.AF_INET6 else sock.TCPSocket
        arbiter.LISTENERS.append(kind(address, arbiter.cfg, arbiter.log, fd=os.dup(listen_fd)))
    except OSError as e:
        return tell(f"declined cannot use the public port's socket: {e}")
    os.close(listen_fd)
    arbiter.log.info("paas-runtime: also accepting on the public port (%s)", arbiter.LISTENERS[-1])
    tell("listening")


_install()
