"""The docker backend: a pod is an infra container that owns the network and PID namespaces
(and publishes the app's port), with the git-sync and runtime containers joined to it
(``network_mode=container:…``, and ``pid_mode=container:…`` when the pod shares its PID
namespace) and the pod's volumes mounted as each container asks.

Every object is labelled ``paas.app`` (and named ``paas-<app>-…``), so a restarted control
plane adopts what already runs, and containers of apps that are no longer stored are found.
Docker's own restart policy brings a crashed container back even while the control plane is
down; the reconciler recreates one that was removed or killed.
"""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime

from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container as DockerContainer

from paas.backends import streams
from paas.backends.base import ContainerStatus, PodStatus, read_status
from paas.backends.docker import images
from paas.errors import BackendUnavailable, PaasError
from paas.podmodel import PERSISTENT, POD, SECRET, SHARED, Container, PodSpec, Volume

INFRA = "pod"
CONTROL_PLANE_ALIAS = "paas-control-plane"
REMOVE_TIMEOUT = 20.0


class BackendError(PaasError):
    status = 502


class DockerBackend:
    name = "docker"

    def __init__(self, instance: str, apps_host: str = "127.0.0.1") -> None:
        self.instance = instance  # only objects labelled with it are this control plane's
        self.apps_host = apps_host  # the host address published ports are bound to
        # In a container (docker-compose.yml), this control plane joins each pod's network and
        # reaches the pod at its address there: the host's published ports are not its own.
        self.in_container = os.path.exists("/.dockerenv")
        self.client = images.connect()
        absent = images.missing(self.client)
        if absent:
            tags = ", ".join(i.tag for i in absent)
            raise BackendUnavailable(f"the pod images are missing ({tags}): run `paas images build`")
        self._lock = threading.RLock()

    # Backend protocol

    def apply(self, spec: PodSpec) -> str | None:
        with self._lock:
            try:
                return self._apply(spec)
            except APIError as e:
                if e.status_code == 409 and "is already in use" in str(e.explanation):
                    raise BackendError(
                        f"docker could not run the pod of {spec.app}: a container of the same name exists "
                        "and was not made by this control plane (remove it, or use another app name)"
                    ) from None
                raise BackendError(f"docker could not run the pod of {spec.app}: {images._reason(e)}") from None
            except DockerException as e:
                raise BackendError(
                    f"docker could not run the pod of {spec.app}: {images._reason(e)}"
                ) from None

    def remove(self, app: str) -> None:
        """Remove the pod's containers, then its network and volume, and check they are gone.

        Found by label and by name (a volume Docker made on its own for a container has no
        labels); a volume still in use by a container being torn down is retried.
        """
        with self._lock:
            try:
                for c in self._containers(app):
                    _quietly(c.remove, force=True)
                for network in self.client.networks.list(filters={"label": [f"paas.app={app}", self._owner]}):
                    network.reload()  # a listed network doesn't say which containers are attached
                    for attached in network.attrs.get("Containers") or {}:
                        _quietly(network.disconnect, attached, force=True)
                    _quietly(network.remove)
                volumes = {v.name for v in self.client.volumes.list(filters={"label": [f"paas.app={app}", self._owner]})}
                self._remove_volumes(volumes | {_name(app, "workspace")})
            except DockerException as e:
                raise BackendError(f"docker could not remove the pod of {app}: {images._reason(e)}") from None

    def _remove_volumes(self, names: set[str]) -> None:
        deadline = time.monotonic() + REMOVE_TIMEOUT
        for name in sorted(names):
            while True:
                try:
                    self.client.volumes.get(name).remove(force=True)
                except NotFound:
                    break
                except APIError as e:
                    if e.status_code != 409 or time.monotonic() >= deadline:  # 409: still in use
                        raise
                    time.sleep(0.2)

    def recreate(self, app: str) -> None:
        """Remove the pod's containers; the next reconcile makes new ones on the same volumes."""
        with self._lock:
            try:
                for c in self._containers(app):
                    _quietly(c.remove, force=True)
            except DockerException as e:
                raise BackendError(f"docker could not recreate the pod of {app}: {images._reason(e)}") from None

    def pods(self, credentials: Mapping[str, str] | None = None) -> dict[str, PodStatus]:
        grouped: dict[str, list[DockerContainer]] = {}
        for c in self.client.containers.list(all=True, filters={"label": ["paas.app", self._owner]}):
            grouped.setdefault(c.labels["paas.app"], []).append(c)
        self._rejoin(grouped)
        return {app: self._status(app, containers, (credentials or {}).get(app)) for app, containers in grouped.items()}

    def logs(self, app: str, follow: bool = False, tail: int = 200) -> Iterator[str]:
        containers = [c for c in self._containers(app) if c.labels.get("paas.container") != INFRA]
        if not follow:
            lines = []
            for c in containers:
                raw = c.logs(timestamps=True, tail=tail).decode("utf-8", "replace")
                lines += [_line(c, text) for text in raw.splitlines()]
            yield from (text for _, text in sorted(lines, key=lambda item: item[0])[-tail:] if tail)
            return
        yield from _follow(containers, tail)

    def endpoint(self, app: str, container: str, port: str) -> str | None:
        try:
            found = self.client.containers.get(_name(app, container))
            infra = self.client.containers.get(_name(app, INFRA))
        except NotFound:
            return None
        number = json.loads(found.labels.get("paas.ports", "{}")).get(port)
        address = _address(infra, _name(app, "net"))
        return f"http://{address}:{number}" if address and number else None

    def signal(self, app: str, container: str, signal: int) -> bool:
        try:
            self.client.containers.get(_name(app, container)).kill(signal=signal)
        except (NotFound, APIError):  # gone, or not running
            return False
        return True

    def close(self) -> None:
        """Pods keep running without the control plane; the next one adopts them."""
        self.client.close()

    # internals

    def _apply(self, spec: PodSpec) -> str | None:
        existing = {c.labels.get("paas.container"): c for c in self._containers(spec.app)}
        done: str | None
        if any(c.labels.get("paas.digest") != spec.digest for c in existing.values()):
            for c in existing.values():
                _quietly(c.remove, force=True)
            existing, done = {}, "pod replaced (its spec changed)"
        else:
            done = None if existing else "pod created"
        network = self._network(spec)
        volumes = {v.name: self._volume(spec, v) for v in spec.volumes if v.kind != SECRET}
        infra = existing.get(INFRA)
        if infra is None or infra.status != "running":
            # Joined containers live in the infra container's namespaces: a new infra means new ones.
            for c in existing.values():
                _quietly(c.remove, force=True)
            if infra is not None:
                done = done or f"pod recreated: its infra container was {infra.status}"
            infra = self._run_infra(spec, network, _restarts(infra))
            existing = {}
            self._join_control_plane(network)
        for container in spec.containers:
            current = existing.get(container.name)
            if current is not None and current.status in ("running", "restarting"):
                continue
            if current is not None:
                done = done or f"{container.name} was {current.status}: recreated"
                _quietly(current.remove, force=True)
            else:
                done = done or f"started {container.name}"
            self._run_container(spec, container, infra, volumes, _restarts(current))
        return done

    def _run_container(
        self, spec: PodSpec, container: Container, infra: DockerContainer, volumes: dict[str, str], restarts: int
    ) -> None:
        env = dict(container.env)
        for port in container.ports:  # the pod has its own network namespace: bind all, as declared
            if port.bind_env:  # (but what only the pod's containers call on loopback)
                env[port.bind_env] = f"{'127.0.0.1' if port.pod_only else '0.0.0.0'}:{port.number}"
        numbers = {(c.name, p.name): p.number for c in spec.containers for p in c.ports}
        env |= {var: f"127.0.0.1:{numbers[peer]}" for var, peer in container.peers.items() if peer in numbers}
        labels = self._labels(spec, container.name, restarts) | {
            "paas.role": container.role,
            "paas.platform": "1" if container.platform else "",
            "paas.ports": json.dumps({p.name: p.number for p in container.ports}),
            "paas.reports": json.dumps(container.reports),
            "paas.status": json.dumps(
                {"port": container.status.port, "path": container.status.path} if container.status else {}
            ),
        }
        binds = {
            volumes[m.volume]: {"bind": m.path, "mode": "ro" if m.read_only else "rw"}
            for m in container.mounts
            if m.volume in volumes
        }
        created = self.client.containers.create(
            container.image,
            command=list(container.command[1:]),
            environment=env,
            name=_name(spec.app, container.name),
            labels=labels,
            network_mode=f"container:{infra.id}",
            pid_mode=f"container:{infra.id}" if spec.share_pid else None,
            volumes=binds,
            restart_policy={"Name": "unless-stopped"},
            **_limits(container),
        )
        for mount in container.mounts:
            volume = spec.volume(mount.volume)
            if volume.kind == SECRET:
                # Copied into the container before it starts: never in its env or `docker inspect`.
                top, tar = _secrets_tar(mount.path, volume.files, self._user(container.image))
                created.put_archive(top, tar)
            elif volume.kind == PERSISTENT and not mount.read_only:
                # A new volume's root is root's (its path is no directory of the image): the
                # app's user owns it, so the app can write the files it keeps there.
                created.put_archive("/", _owned_dir_tar(mount.path, self._user(container.image)))
        created.start()

    def _user(self, image: str) -> tuple[int, int] | None:
        """The numeric uid:gid an image runs as, if it says so."""
        user = (self.client.images.get(image).attrs.get("Config") or {}).get("User") or ""
        uid, _, gid = user.partition(":")
        if uid.isdigit():
            return int(uid), int(gid) if gid.isdigit() else int(uid)
        return None if user not in ("", "root", "0") else (0, 0)

    def _run_infra(self, spec: PodSpec, network: str, restarts: int) -> DockerContainer:
        """The container that owns the pod's namespaces; any pod image has ``sleep``."""
        name = _name(spec.app, INFRA)
        try:
            found = self.client.containers.get(name)
            if found.labels.get("paas.instance") == self.instance:  # never another control plane's
                found.remove(force=True)
        except NotFound:
            pass
        return self.client.containers.run(
            spec.containers[0].image,
            entrypoint=["sleep", "infinity"],
            name=name,
            hostname=spec.app,
            init=True,
            labels=self._labels(spec, INFRA, restarts),
            network=network,
            ports={f"{p.number}/tcp": (self.apps_host, p.number) for p in spec.published},
            extra_hosts={"host.docker.internal": "host-gateway"},
            restart_policy={"Name": "unless-stopped"},
            detach=True,
        )

    def _network(self, spec: PodSpec) -> str:
        name = _name(spec.app, "net")
        if not self.client.networks.list(names=[name]):
            self.client.networks.create(name, driver="bridge", labels=self._labels(spec))
        return name

    def _volume(self, spec: PodSpec, volume: Volume) -> str:
        """The named volume for a pod volume: the pod's own, or one every pod of this control
        plane shares (a dependency cache, kept when apps go)."""
        if volume.kind == SHARED:
            name, labels = f"paas-{volume.name}-{self.instance}", {"paas.instance": self.instance, "paas.shared": "1"}
        elif volume.kind in (POD, PERSISTENT):  # both go with the app (by label), not with the pod
            name, labels = _name(spec.app, volume.name), self._labels(spec)
        else:
            raise BackendError(f"the docker backend has no volumes of kind {volume.kind!r}")
        try:
            self.client.volumes.get(name)
        except NotFound:
            self.client.volumes.create(name, labels=labels)
        return name

    def _join_control_plane(self, network: str) -> None:
        """A control plane that runs in a container joins each pod's network to reach its
        control endpoints (/sync) and its ports (the router)."""
        if not self.in_container:
            return
        try:
            me = self.client.containers.get(socket.gethostname())
            self.client.networks.get(network).connect(me, aliases=[CONTROL_PLANE_ALIAS])
        except (NotFound, APIError):
            pass

    def _rejoin(self, pods: Mapping[str, list[DockerContainer]]) -> None:
        """A control plane in a container made anew (an upgrade, `docker-compose up` again)
        joins the networks of the pods it adopts, which its predecessor had joined."""
        if not self.in_container or not pods:
            return
        try:
            joined = self.client.containers.get(socket.gethostname()).attrs["NetworkSettings"]["Networks"]
        except (NotFound, APIError, KeyError):
            return
        for app in pods:
            if _name(app, "net") not in joined:
                self._join_control_plane(_name(app, "net"))

    @property
    def _owner(self) -> str:
        return f"paas.instance={self.instance}"

    def _labels(self, spec: PodSpec, container: str | None = None, restarts: int = 0) -> dict[str, str]:
        labels = spec.labels | {"paas.instance": self.instance}
        if container is not None:
            labels |= {
                "paas.pod": spec.app,
                "paas.container": container,
                "paas.digest": spec.digest,
                "paas.restarts": str(restarts),
            }
        return labels

    def _containers(self, app: str) -> list[DockerContainer]:
        return self.client.containers.list(all=True, filters={"label": [f"paas.app={app}", self._owner]})

    def _status(self, app: str, containers: list[DockerContainer], credential: str | None) -> PodStatus:
        digests = {c.labels.get("paas.digest", "") for c in containers}
        statuses_list = []
        statuses: dict[str, dict] = {}
        reports: dict[str, dict] = {}
        infra = next((c for c in containers if c.labels.get("paas.container") == INFRA), None)
        address = _address(infra, _name(app, "net")) if infra is not None else None
        for c in sorted(containers, key=lambda c: c.labels.get("paas.container", "")):
            name = c.labels.get("paas.container", c.name)
            state = c.attrs.get("State", {})
            exited = c.status != "running" or int(c.attrs.get("RestartCount", 0)) > 0
            statuses_list.append(
                ContainerStatus(
                    name=name,
                    state="running" if c.status == "running" else c.status,
                    restarts=_restart_count(c),
                    started=_timestamp(state.get("StartedAt")),
                    image=c.attrs["Config"]["Image"],
                    id=c.short_id,
                    exit_code=state.get("ExitCode") if exited else None,
                    role=c.labels.get("paas.role", ""),
                    platform=bool(c.labels.get("paas.platform")),
                )
            )
            for key, path in json.loads(c.labels.get("paas.reports", "{}")).items():
                reports[key] = _read_json(c, path)
            endpoint = json.loads(c.labels.get("paas.status") or "{}")
            if endpoint and c.status == "running" and address:
                number = json.loads(c.labels.get("paas.ports", "{}")).get(endpoint["port"])
                statuses[name] = read_status(f"http://{address}:{number}{endpoint['path']}", credential)
        digest = digests.pop() if len(digests) == 1 else ""
        return PodStatus(app, digest, statuses_list, statuses, reports, address if self.in_container else None)


def _name(app: str, part: str) -> str:
    return f"paas-{app}-{part}"


def _restart_count(container: DockerContainer) -> int:
    """Restarts so far: recreations (carried over in a label) plus Docker's own restarts."""
    return int(container.labels.get("paas.restarts", "0")) + int(container.attrs.get("RestartCount", 0))


def _restarts(replaced: DockerContainer | None) -> int:
    """The restart count of a container created to replace ``replaced`` (0 for a first one)."""
    return 0 if replaced is None else _restart_count(replaced) + 1


def _limits(container: Container) -> dict:
    limits: dict = {}
    if container.resources is None:
        return limits
    if container.resources.memory:
        limits["mem_limit"] = container.resources.memory
    if container.resources.cpus:
        limits["nano_cpus"] = int(container.resources.cpus * 1e9)
    return limits


def _secrets_tar(path: str, files: dict[str, str], owner: tuple[int, int] | None) -> tuple[str, bytes]:
    """Where to unpack, and a tar making directory ``path`` hold ``files``, readable by the
    container's user only (by every user of the container if its user isn't numeric)."""
    buffer = io.BytesIO()
    uid, gid = owner or (0, 0)
    top, *below = path.strip("/").split("/")  # the top directory exists in every image
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        path = ""
        for part in below:
            path = f"{path}/{part}" if path else part
            info = tarfile.TarInfo(path)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(f"{path}/{name}")
            info.size, info.uid, info.gid = len(data), uid, gid
            info.mode = 0o400 if owner else 0o444
            tar.addfile(info, io.BytesIO(data))
    return f"/{top}", buffer.getvalue()


def _owned_dir_tar(path: str, owner: tuple[int, int] | None) -> bytes:
    """A tar that, unpacked at /, gives directory ``path`` to ``owner`` (mode 0755)."""
    buffer = io.BytesIO()
    info = tarfile.TarInfo(path.strip("/"))
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    info.uid, info.gid = owner or (0, 0)
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(info)
    return buffer.getvalue()


def _address(infra: DockerContainer, network: str) -> str | None:
    """The pod's address on its network: where the control plane reaches its ports."""
    return (infra.attrs["NetworkSettings"]["Networks"].get(network) or {}).get("IPAddress") or None


def _read_json(container: DockerContainer, path: str) -> dict:
    try:
        stream, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.getmembers()[0]
            return json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
    except (DockerException, tarfile.TarError, ValueError, IndexError, AttributeError):
        return {}


def _timestamp(value: str | None) -> float | None:
    if not value or value.startswith("0001"):
        return None
    return datetime.fromisoformat(value[:26].rstrip("Z") + "+00:00").timestamp()


def _line(container: DockerContainer, raw: str) -> tuple[str, str]:
    stamp, _, text = raw.partition(" ")
    return stamp, f"{container.labels.get('paas.container', container.name)} | {text}"


def _follow(containers: list[DockerContainer], tail: int) -> Iterator[str]:
    def source(c: DockerContainer) -> streams.Source:
        def lines() -> Iterator[str]:
            try:
                for raw in streams.lines_of(c.logs(stream=True, follow=True, timestamps=True, tail=tail)):
                    yield _line(c, raw)[1]
            except DockerException:
                return
        return lines

    return streams.merge([source(c) for c in containers])


def _quietly(action, *args, **kwargs) -> None:
    try:
        action(*args, **kwargs)
    except NotFound:
        pass
