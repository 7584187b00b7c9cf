"""Orchestration: follow the link, bring each revision up beside the old one, switch, retire.

Three kinds of work overlap, each its own task:

* a *deploy* brings the link's newest revision up (build, start, health
  check); a newer revision cancels it, since only the newest one matters;
* a *restart* brings the serving revision back after its instance crashed,
  with backoff; a successful deploy makes it moot;
* a *retire* drains and stops an instance that traffic has left.

Switching traffic itself is one synchronous step (:meth:`Supervisor._switch`),
so whichever of a deploy and a restart finishes last decides what serves.

Traffic reaches an instance one of two ways (:mod:`paas_runtime.port`): the
kernel steers the public port's new connections to the instance's own
listener, which the app accepts on directly once its adapter has taken it
(:mod:`paas_runtime.handoff`), or to the supervisor's proxy, which passes them
on to the instance's private port. The proxy also carries whatever an app that
does not take its listener, a crash or a drain leaves to it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any

from . import build, live, process, progress, snapshot, status_server, volumes
from .build import Plan
from .errors import DeployFailed, ListenFailed, StartFailed
from .handoff import Channel
from .health import probe
from .port import PublicPort, Slot
from .process import ProcessGroup
from .proxy import Backend, Proxy
from .settings import Settings
from .state import EventKind, Failure, Status
from .watcher import Revision, read_link, watch

log = logging.getLogger(__name__)

#: How long an instance that traffic has left may finish its open connections.
DRAIN_TIMEOUT = 10.0
#: After a switch, how long a connection still handshaking may take to reach the old listener.
HANDSHAKE_SETTLE = 0.02
DRAIN_POLL = 0.02
#: Pause between health probes of a starting instance.
HEALTH_INTERVAL = 0.05
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
#: An instance that ran this long before crashing gets the short backoff again.
BACKOFF_RESET_AFTER = 30.0


@dataclass(eq=False)
class Instance:
    """One running copy of a revision's app, the proxy's handle on it and its slot of the port."""

    plan: Plan
    group: ProcessGroup
    backend: Backend
    slot: Slot | None = None
    channel: Channel | None = None
    #: Set once traffic has left it (or it is being stopped): its exit is expected.
    retiring: bool = False

    @property
    def name(self) -> str:
        return f"{self.plan.revision.hash[:12]} (pid {self.group.pid})"

    @property
    def direct(self) -> bool:
        """Whether the app accepts on its slot itself (else it is reached through the proxy)."""
        return self.slot is not None and self.channel is not None and self.channel.listening


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = PublicPort(settings.port, settings.host)
        self.proxy = Proxy(self.port.proxy_listener)
        self.state = Status()
        #: The live settings new instances are started with (see `paas_runtime.live`).
        self.live = settings.live
        self._given = asyncio.Event()  # set once the settings hold the config values
        if not self.live.withheld:
            self._given.set()
        self._volumes = volumes.Sizes(settings.app_env)
        self._target: Revision | None = None
        self._current: Instance | None = None
        self._instances: set[Instance] = set()
        self._deploy: asyncio.Task[None] | None = None
        self._restart: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._backoff = BACKOFF_FIRST
        self._stopping = False

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then stop every instance; raises ListenFailed."""
        self.proxy.start()
        endpoint = None
        if self.settings.status_bind:
            try:
                endpoint = await status_server.serve(
                    self.settings.status_bind, self.report, self.apply_settings, self.settings.secret
                )
            except OSError as e:
                raise ListenFailed(f"cannot serve the status endpoint on {self.settings.status_bind}: {e}") from e
        log.info("listening on port %d, following %s", self.settings.port, self.settings.app_dir)
        await asyncio.to_thread(snapshot.clear, snapshot.root_for(self.settings.app_dir))
        self.state.update(
            status="waiting", settings=self.live.version, config_version=self.live.config_version,
            received="" if self.live.withheld else self.live.version,  # "": send me the settings
        )
        try:
            async for revision in watch(self.settings.app_dir, stop):
                self._on_target(revision)
        finally:
            if endpoint is not None:
                endpoint.close()
            await self._shutdown()

    def report(self) -> dict[str, Any]:
        """The status endpoint's answer: the state, and every instance that runs."""
        instances = [
            {
                "pid": i.group.pid,
                "main_pid": process.main_pid(i.group.pid),
                "revision": i.plan.revision.hash,
                "state": "draining" if i.retiring else ("serving" if i is self._current else "starting"),
                "traffic": ("direct" if i.direct else "proxied") if i is self._current else None,
                "port": i.backend.port,
                "settings": i.plan.live.version,
                "config_version": i.plan.live.config_version,
            }
            for i in self._instances
        ]
        # Where the link points now (not where it pointed when last followed): the control
        # plane calls a release live only once git-sync and the runtime agree on it.
        link = read_link(self.settings.app_dir)
        return self.state.to_json() | {"instances": instances, "volumes": self._volumes.get(),
                                       "link": link.hash if link else None}

    def apply_settings(self, data: Any) -> dict[str, Any]:
        """New live settings (`PUT /settings`): kept, and rolled out as a new instance of the
        serving revision when they change how the app runs; raises ValueError if invalid."""
        new = live.parse(data)
        if new.withheld:
            raise ValueError("settings sent here carry the config values (withheld: false)")
        old, self.live = self.live, new
        self.state.update(received=new.version)
        if self.settings.settings_file is not None:
            live.save(self.settings.settings_file, new)
        reason = old.restart_reason(new)
        if old.withheld:
            # Nothing was built without them: a deploy waiting for them goes on with these.
            self._given.set()
            self.state.update(settings=new.version, config_version=new.config_version)
        elif reason is None:
            # Nothing to restart for: what serves runs with these settings (config variables
            # the app reloads by itself reach it through the config sidecar).
            if self._current is not None:
                self._current.plan = replace(self._current.plan, live=new)
            self.state.update(settings=new.version, config_version=new.config_version)
        elif self._target is not None:
            log.info("new settings (%s): a new instance of %s", reason, self._target.hash)
            if self._deploy is not None:
                self._deploy.cancel()
            self._deploy = self._spawn(self._deploy_revision(self._target, because=reason))
        return {"settings": new.version}

    # -- revisions -------------------------------------------------------------

    def _on_target(self, revision: Revision) -> None:
        self._target = revision
        if self._deploy is not None:
            self._deploy.cancel()
        if self._current is not None and self._current.plan.revision == revision:
            log.info("link points at %s again, which is serving", revision.hash)
            self.state.update(status="serving", target=revision.hash, failed=None)
            return
        log.info("new revision %s", revision.hash)
        self._deploy = self._spawn(self._deploy_revision(revision))

    async def _deploy_revision(self, revision: Revision, because: str | None = None) -> None:
        with progress.reporting(lambda text: self.state.step(revision.hash, text)):
            await self._deploy_reporting(revision, because)

    async def _deploy_reporting(self, revision: Revision, because: str | None) -> None:
        began = time.monotonic()
        self.state.update(status="building", target=revision.hash)
        progress.say(f"restarting {revision.hash[:12]}: {because}" if because else f"building {revision.hash[:12]}")
        plan: Plan | None = None
        if not self._given.is_set():
            progress.say("waiting for the config variables from the control plane")
            await self._given.wait()
        try:
            plan = await build.prepare(revision, self.settings, self.live)
            self.state.update(status="starting")
            instance = await self._start(plan)
        except BaseException as e:
            if plan is not None:
                plan.discard()
            if not isinstance(e, DeployFailed):
                raise
            log.error(
                "revision %s failed, %s: %s",
                revision.hash,
                "keeping the old one serving" if self._current else "nothing is serving",
                e.summary,
            )
            self.state.event(
                "failed",
                revision.hash,
                e.summary,
                status="failed",
                failed=Failure(revision.hash, e.reason, config_version=self.live.config_version),
            )
            return
        if self._restart is not None:
            self._restart.cancel()
        self._backoff = BACKOFF_FIRST  # new code, fresh start
        took = time.monotonic() - began
        progress.say(f"healthy: traffic switched to {revision.hash[:12]}, {took:.2f} s after the link moved")
        self._switch(instance, "deployed", f"{plan.runtime} revision serving after {took:.2f} s")

    # -- instances -------------------------------------------------------------

    async def _start(self, plan: Plan) -> Instance:
        """Start ``plan`` on a private port and wait for its health check; raises StartFailed.

        The command runs under ``sh -c``, as a Procfile line would: it is the
        app's own command for the app's own container, and may use ``$PORT``.
        """
        port = _free_port()
        env = {
            **plan.env,
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "PAAS_PUBLIC_PORT": str(self.settings.port),
            "PAAS_PUBLIC_HOST": self.settings.host or "127.0.0.1",
        }
        slot = self.port.take_slot()
        channel: Channel | None = None
        fds: tuple[int, ...] = ()
        if slot is not None:
            channel = Channel()
            fds = (slot.fd, channel.theirs.fileno())
            env |= {"PAAS_LISTEN_FD": str(fds[0]), "PAAS_CONTROL_FD": str(fds[1])}
        try:
            group = await ProcessGroup.start(["/bin/sh", "-c", plan.command], plan.workdir, env, pass_fds=fds)
        except OSError as e:
            self._release(slot, channel)
            raise StartFailed(f"cannot start {plan.command!r}: {e}") from e
        if channel is not None:
            channel.started()
        instance = Instance(plan, group, Backend(port), slot, channel)
        self._instances.add(instance)
        log.info("started %s on 127.0.0.1:%d: %s", instance.name, port, plan.command)
        progress.say(
            f"started `{plan.command}`; waiting for GET {plan.live.healthcheck} to answer "
            f"(up to {plan.live.health_timeout:g} s)"
        )
        try:
            await self._until_healthy(instance)
        except BaseException:
            await self._stop(instance)
            raise
        return instance

    async def _until_healthy(self, instance: Instance) -> None:
        path, timeout = instance.plan.live.healthcheck, instance.plan.live.health_timeout
        deadline = time.monotonic() + timeout
        status: int | None = None
        while True:
            if instance.group.returncode is not None:
                code = await instance.group.wait()
                raise StartFailed(
                    f"the app exited with code {code} before answering its health check\n"
                    + instance.group.tail()
                )
            status = await probe(instance.backend.port, path)
            if status is not None and status < 500:
                return
            if time.monotonic() >= deadline:
                answer = f"status {status}" if status is not None else self._not_listening(instance)
                raise StartFailed(
                    f"the app did not answer GET {path} with a status below 500 within "
                    f"{timeout:g} s ({answer})\n" + instance.group.tail()
                )
            await asyncio.sleep(HEALTH_INTERVAL)

    def _not_listening(self, instance: Instance) -> str:
        """Why nothing answered: what the app listens on instead of ``$PORT``, if it does."""
        port = instance.backend.port
        ours = (f":{port}", f":{self.settings.port}")  # its $PORT, and the public port's slot it inherits
        try:
            elsewhere = [a for a in process.listening(instance.group.pid) if not a.endswith(ours)]
        except OSError:
            elsewhere = []
        hint = f"no answer: the app must listen on $PORT (here PORT={port})"
        if elsewhere:
            return f"{hint}, but it listens on {', '.join(elsewhere)} instead"
        return f"{hint}, and it listens on no TCP port at all"

    def _switch(self, instance: Instance, kind: EventKind, message: str) -> None:
        """Send new connections to ``instance``; the previous one drains and stops."""
        old, self._current = self._current, instance
        self.proxy.switch(instance.backend)
        self.port.steer(instance.slot if instance.direct else None)
        self._spawn(self._monitor(instance))
        if old is not None:
            old.retiring = True
            if old.channel is not None:
                # Right away, so that no request on a connection kept alive to it gets the old
                # revision after one already got the new; not before the steering, or its
                # adapter would forward requests back to itself.
                old.channel.tell("retire")
            self._spawn(self._retire(old))
        changes: dict[str, Any] = {
            "serving": instance.plan.revision.hash,
            "runtime": instance.plan.runtime,
            "traffic": "direct" if instance.direct else "proxied",
            "settings": instance.plan.live.version,
            "config_version": instance.plan.live.config_version,
        }
        if instance.plan.revision == self._target:
            changes.update(status="serving", failed=None)
        self.state.event(kind, instance.plan.revision.hash, message, **changes)

    async def _retire(self, instance: Instance) -> None:
        """Let the connections traffic has left finish, then stop the instance."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        direct_drained = await self._direct_drained(instance, deadline)
        if not (await instance.backend.drained(max(0.0, deadline - time.monotonic())) and direct_drained):
            log.warning(
                "%s still has open connections after %g s; stopping it anyway", instance.name, DRAIN_TIMEOUT
            )
        await self._stop(instance)
        log.info("stopped %s", instance.name)
        self._discard_unless_current(instance.plan)

    async def _direct_drained(self, instance: Instance, deadline: float) -> bool:
        """Wait until nothing reaches the app on its slot any more; False if ``deadline`` came first.

        Done when the slot's queue is empty and no process of the instance holds a
        connection on the public port. Trivially true for a proxied instance.
        """
        if not instance.direct:
            return True
        assert instance.slot is not None
        await asyncio.sleep(HANDSHAKE_SETTLE)
        while instance.slot.queued() or self._holds_connections(instance):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(DRAIN_POLL)
        return True

    def _holds_connections(self, instance: Instance) -> bool:
        try:
            return process.connections(instance.group.pid, self.settings.port) > 0
        except OSError:  # no /proc to tell: the drain waits out its time
            return True

    def _discard_unless_current(self, plan: Plan) -> None:
        if self._current is None or self._current.plan is not plan:
            plan.discard()

    async def _stop(self, instance: Instance) -> None:
        instance.retiring = True
        await instance.group.stop()
        self._instances.discard(instance)
        self._release(instance.slot, instance.channel)

    def _release(self, slot: Slot | None, channel: Channel | None) -> None:
        """The instance is gone: the proxy takes over what is left in its slot's queue."""
        if channel is not None:
            channel.close()
        if slot is not None:
            if self.port.steered is slot:
                self.port.steer(None)
            leftovers = slot.salvage()
            if self._stopping:
                for client in leftovers:
                    client.close()
            else:
                self.proxy.adopt(leftovers)

    # -- crashes ---------------------------------------------------------------

    async def _monitor(self, instance: Instance) -> None:
        code = await instance.group.wait()
        if instance.retiring or self._stopping:
            return
        self._instances.discard(instance)
        if self._current is instance:
            self._current = None
            self.proxy.switch(None)
        self._release(instance.slot, instance.channel)
        if instance.group.uptime >= BACKOFF_RESET_AFTER:
            self._backoff = BACKOFF_FIRST
        log.warning(
            "%s exited with code %d after %.1f s; restarting in %g s",
            instance.name,
            code,
            instance.group.uptime,
            self._backoff,
        )
        changes: dict[str, Any] = {"serving": None, "runtime": None, "traffic": None}
        if instance.plan.revision == self._target and self._deploy_idle():
            changes["status"] = "starting"
        self.state.event(
            "crashed",
            instance.plan.revision.hash,
            f"exited with code {code} after {instance.group.uptime:.1f} s; restarting in {self._backoff:g} s",
            **changes,
        )
        self._restart = self._spawn(self._restart_plan(instance.plan))

    async def _restart_plan(self, plan: Plan) -> None:
        try:
            await self._restart_until_up(plan)
        except asyncio.CancelledError:
            # A newer revision took over (or the supervisor stops): this one is done for.
            self._discard_unless_current(plan)
            raise

    async def _restart_until_up(self, plan: Plan) -> None:
        while True:
            delay = self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)
            await asyncio.sleep(delay)
            self.state.update(restarts=self.state.state.restarts + 1)
            try:
                instance = await self._start(plan)
            except DeployFailed as e:
                log.warning(
                    "restarting %s failed: %s; next try in %g s",
                    plan.revision.hash,
                    e.summary,
                    self._backoff,
                )
                changes: dict[str, Any] = {
                    "failed": Failure(plan.revision.hash, e.reason, config_version=plan.live.config_version)
                }
                if plan.revision == self._target and self._deploy_idle():
                    changes["status"] = "failed"
                self.state.update(**changes)
                continue
            self._switch(instance, "restarted", f"restarted after a crash (restart {self.state.state.restarts})")
            log.info("restarted %s", instance.name)
            return

    def _deploy_idle(self) -> bool:
        return self._deploy is None or self._deploy.done()

    # -- housekeeping ----------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("internal error in %s", task.get_coro().__qualname__, exc_info=error)

    async def _shutdown(self) -> None:
        """Stop accepting, stop every instance (whole process groups), end all tasks."""
        self._stopping = True
        self.proxy.close()
        self.proxy.switch(None)
        for task in (self._deploy, self._restart):
            if task is not None:
                task.cancel()
        # Cancelled deploys stop the instances they started on their way out.
        await asyncio.gather(
            *(t for t in (self._deploy, self._restart) if t is not None),
            return_exceptions=True,
        )
        await asyncio.gather(*(self._stop(i) for i in list(self._instances)))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.port.close()
        await asyncio.to_thread(snapshot.clear, snapshot.root_for(self.settings.app_dir))
        log.info("stopped")


def _free_port() -> int:
    """A loopback port nobody listens on right now, for the next instance."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
