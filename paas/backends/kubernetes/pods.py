"""The kubernetes backend: a pod spec becomes the objects `render` makes, applied with
server-side apply (one field manager, ``paas``) in a namespace of its own, with the official
client, from ``KUBECONFIG`` or the in-cluster config.

Every object is labelled with the app (``app.kubernetes.io/instance``) and this control
plane (``paas.dev/instance``), so a restarted control plane adopts its Deployments and never
touches another's. The reconciler sees one pod per app: the newest that isn't terminating.
A push is a sync inside the running pod (git-sync's ``POST /sync`` at the pod's address);
only a changed pod spec changes the Deployment's template, which Kubernetes rolls out.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.stream import stream
from urllib3.exceptions import HTTPError, MaxRetryError

from paas.backends import streams
from paas.backends.base import ContainerStatus, PodStatus, read_status
from paas.backends.kubernetes import render
from paas.backends.kubernetes.options import Options, check_image_prefix, check_namespace
from paas.errors import BackendUnavailable, PaasError
from paas.podmodel import PodSpec
from paas.settings import Settings

MANAGER = "paas"
APPLY = "application/apply-patch+yaml"
TIMEOUT = 10


class BackendError(PaasError):
    status = 502


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, instance: str, settings: Settings) -> None:
        self.instance = instance
        self.namespace = check_namespace(settings.kube_namespace)
        image_prefix = check_image_prefix(settings.kube_image_prefix)
        self.api = _connect()
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.networking = client.NetworkingV1Api(self.api)
        try:
            version = client.VersionApi(self.api).get_code(_request_timeout=TIMEOUT)
            self.base = Options(
                namespace=self.namespace,
                kube_version=(int(version.major), int("".join(ch for ch in version.minor if ch.isdigit()))),
                image_prefix=image_prefix,
                host_network=bool(settings.kube_host_network),
                apps_host=settings.app_address if settings.app_address not in ("0.0.0.0", "::", "") else "127.0.0.1",
                grace_period=settings.kube_grace_period,
                instance=instance,
            )
            self._apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}})
        except (ApiException, HTTPError, OSError, ValueError) as e:
            raise BackendUnavailable(
                f"the Kubernetes API server at {self.api.configuration.host} did not answer: {_reason(e)}"
            ) from None
        self._lock = threading.RLock()
        self._ports: dict[str, dict[str, int]] = {}  # host network: app -> "container/port" -> node port
        self._seen: dict[str, client.V1Pod] = {}  # the pods of the last `pods()`, for endpoints

    # Backend protocol

    def apply(self, spec: PodSpec) -> str | None:
        with self._lock:
            try:
                current = self._deployment(spec.app)
                owner = (current.metadata.labels or {}).get(render.INSTANCE_LABEL) if current is not None else None
                if current is not None and owner != self.instance:
                    raise BackendError(
                        f"a Deployment named {spec.app} in namespace {self.namespace} was not made by this control "
                        "plane (remove it, or use another app name or PAAS_KUBE_NAMESPACE)"
                    )
                options = replace(self.base, ports=self._ports_for(spec, current))
                for obj in render.render(spec, options):
                    self._apply(obj)
            except (ApiException, HTTPError, OSError) as e:
                raise BackendError(f"Kubernetes could not run the pod of {spec.app}: {_reason(e)}") from None
        if current is None:
            return "deployment created"
        annotations = current.spec.template.metadata.annotations or {}
        if annotations.get(render.DIGEST) != spec.digest:
            return "deployment updated (its spec changed): rolling out a new pod"
        return None

    def remove(self, app: str) -> None:
        selector = render.selector(app, self.instance)
        ns = self.namespace
        opts: dict[str, Any] = {"label_selector": selector, "_request_timeout": TIMEOUT}
        # What a delete answers differs between server versions (a Status or the object): unread.
        unread = opts | {"_preload_content": False}
        try:
            with self._lock:
                for d in self.apps.list_namespaced_deployment(ns, **opts).items:
                    _gone(self.apps.delete_namespaced_deployment, d.metadata.name, ns, propagation_policy="Background")
                for s in self.core.list_namespaced_service(ns, **opts).items:
                    _gone(self.core.delete_namespaced_service, s.metadata.name, ns)
                for i in self.networking.list_namespaced_ingress(ns, **opts).items:
                    _gone(self.networking.delete_namespaced_ingress, i.metadata.name, ns)
                self.core.delete_collection_namespaced_secret(ns, **unread)
                self.core.delete_collection_namespaced_persistent_volume_claim(ns, **unread)
                self.core.delete_collection_namespaced_pod(ns, **unread)
                self._ports.pop(app, None)
                self._seen.pop(app, None)
        except (ApiException, HTTPError, OSError) as e:
            raise BackendError(f"Kubernetes could not remove the pod of {app}: {_reason(e)}") from None

    def recreate(self, app: str) -> None:
        """Delete the app's pods: its Deployment makes a new one (volumes kept)."""
        try:
            self.core.delete_collection_namespaced_pod(
                self.namespace, label_selector=render.selector(app, self.instance), _request_timeout=TIMEOUT,
                _preload_content=False)
        except (ApiException, HTTPError, OSError) as e:
            raise BackendError(f"Kubernetes could not recreate the pod of {app}: {_reason(e)}") from None

    def pods(self, credentials: Mapping[str, str] | None = None) -> dict[str, PodStatus]:
        newest = self._newest()
        return {app: self._status(app, pod, (credentials or {}).get(app)) for app, pod in newest.items()}

    def _newest(self) -> dict[str, client.V1Pod]:
        """Each app's newest pod that isn't terminating (also kept for `endpoint`)."""
        selector = f"app.kubernetes.io/managed-by={render.MANAGED_BY},{render.INSTANCE_LABEL}={self.instance}"
        try:
            found = self.core.list_namespaced_pod(self.namespace, label_selector=selector,
                                                  _request_timeout=TIMEOUT).items
        except (ApiException, HTTPError, OSError) as e:
            raise BackendError(f"Kubernetes did not list the pods: {_reason(e)}") from None
        newest: dict[str, client.V1Pod] = {}
        for pod in found:
            app = (pod.metadata.labels or {}).get("app.kubernetes.io/instance")
            if not app or pod.metadata.deletion_timestamp is not None:
                continue
            if app not in newest or pod.metadata.creation_timestamp > newest[app].metadata.creation_timestamp:
                newest[app] = pod
        self._seen = newest
        return newest

    def logs(self, app: str, follow: bool = False, tail: int = 200) -> Iterator[str]:
        """Read at once (so an unreadable pod is an error, not an empty answer); followed lazily."""
        pod = self._pod(app)
        if pod is None:
            return iter(())
        names, name = list(_described(pod)), pod.metadata.name
        if follow:
            return streams.merge([self._follower(name, c, tail) for c in names])
        lines: list[tuple[str, str]] = []
        problems: list[str] = []
        for container in names:
            try:
                text = self.core.read_namespaced_pod_log(name, self.namespace, container=container, tail_lines=tail,
                                                         timestamps=True, _request_timeout=TIMEOUT)
            except ApiException as e:
                if e.status != 400:  # 400: the container hasn't started (yet)
                    problems.append(_reason(e))
                continue
            except (HTTPError, OSError) as e:
                problems.append(_reason(e))
                continue
            lines += [_line(container, raw) for raw in text.splitlines()]
        if problems and len(problems) == len(names):
            raise BackendError(f"Kubernetes did not give the logs of {app}: {problems[0]}")
        return iter([text for _, text in sorted(lines)[-tail:]] if tail else [])

    def endpoint(self, app: str, container: str, port: str) -> str | None:
        pod = self._seen.get(app) or self._pod(app)
        return None if pod is None else self._url(pod, _described(pod).get(container, {}), port)

    def signal(self, app: str, container: str, signal: int) -> bool:
        """Signal the container's main process by exec (``kill`` in its shell); not in a pod
        sharing its PID namespace, where PID 1 is the pause process."""
        pod = self._seen.get(app) or self._pod(app)
        if pod is None or pod.spec.share_process_namespace:
            return False
        try:
            stream(self.core.connect_get_namespaced_pod_exec, pod.metadata.name, self.namespace,
                   container=container, command=["sh", "-c", f"kill -{int(signal)} 1"],
                   stderr=True, stdout=True, stdin=False, tty=False, _request_timeout=TIMEOUT)
        except (ApiException, HTTPError, OSError):
            return False
        return True

    def close(self) -> None:
        """Deployments keep running without the control plane; the next one adopts them."""
        self.api.close()

    # internals

    def _apply(self, obj: dict) -> None:
        kind, name, ns = obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace")
        common: dict[str, Any] = {"field_manager": MANAGER, "force": True, "_content_type": APPLY,
                                  "_request_timeout": TIMEOUT, "_preload_content": False}
        appliers: dict[str, Callable[..., Any]] = {
            "Secret": self.core.patch_namespaced_secret,
            "PersistentVolumeClaim": self.core.patch_namespaced_persistent_volume_claim,
            "Deployment": self.apps.patch_namespaced_deployment,
            "Service": self.core.patch_namespaced_service,
            "Ingress": self.networking.patch_namespaced_ingress,
        }
        if kind == "Namespace":
            self.core.patch_namespace(name, obj, **common)
        else:
            appliers[kind](name, ns, obj, **common)

    def _deployment(self, app: str) -> client.V1Deployment | None:
        try:
            return self.apps.read_namespaced_deployment(app, self.namespace, _request_timeout=TIMEOUT)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def _ports_for(self, spec: PodSpec, current: client.V1Deployment | None) -> dict[str, int]:
        """Host network: the node ports of the pod's internal ports — those its Deployment was
        given (kept across restarts of the control plane), new free ones for the rest."""
        if not self.base.host_network:
            return {}
        known = self._ports.get(spec.app)
        if known is None and current is not None:
            known = json.loads((current.spec.template.metadata.annotations or {}).get(render.PORTS) or "{}")
        ports = {k: v for k, v in (known or {}).items() if k in render.internal_ports(spec)}
        taken = {n for other in self._ports.values() for n in other.values()} | set(ports.values())
        for key in render.internal_ports(spec):
            if key not in ports:
                ports[key] = _free_port(self.base.apps_host, taken)
                taken.add(ports[key])
        self._ports[spec.app] = ports
        return ports

    def _pod(self, app: str) -> client.V1Pod | None:
        return self._newest().get(app)

    def _url(self, pod: client.V1Pod, about: dict, port: str) -> str | None:
        """Where the control plane reaches a port the pod's annotation describes (``about``: a
        container's entry): the node's address for it on its network, else the pod's IP."""
        declared = about.get("ports", {}).get(port)
        if declared is None:
            return None
        number, published = declared
        if self.base.host_network:
            address: str | None = render.listen_host(published, self.base)
        else:
            address = pod.status.pod_ip if pod.status else None
        return f"http://{address}:{number}" if address else None

    def _status(self, app: str, pod: client.V1Pod, credential: str | None) -> PodStatus:
        described = _described(pod)
        statuses = {s.name: s for s in (pod.status.init_container_statuses or []) + (pod.status.container_statuses or [])}
        containers: list[ContainerStatus] = []
        endpoints: dict[str, dict] = {}
        for name, about in described.items():
            s = statuses.get(name)
            if s is None:  # not reported by the kubelet yet
                continue
            state, started, exit_code = _state(s)
            containers.append(ContainerStatus(
                name=name, state=state, restarts=s.restart_count or 0, started=started, image=s.image or "",
                id=(s.container_id or "").partition("://")[2][:12], exit_code=exit_code if s.restart_count else None,
                role=about.get("role", ""), platform=bool(about.get("platform")),
            ))
            status = about.get("status")
            if status and state == "running":
                url = self._url(pod, about, status["port"])
                if url:
                    endpoints[name] = read_status(f"{url}{status['path']}", credential)
        annotations = pod.metadata.annotations or {}
        return PodStatus(app, annotations.get(render.DIGEST, ""), containers, endpoints)

    def _follower(self, pod: str, container: str, tail: int) -> Callable[[], Iterator[str]]:
        def lines() -> Iterator[str]:
            try:
                response = self.core.read_namespaced_pod_log(pod, self.namespace, container=container, follow=True,
                                                             tail_lines=tail, _preload_content=False)
            except (ApiException, HTTPError, OSError):
                return
            try:
                for raw in streams.lines_of(response.stream(4096)):
                    yield f"{container} | {raw}"
            except (HTTPError, OSError):
                return
            finally:
                response.release_conn()
        return lines


def _connect() -> client.ApiClient:
    try:
        config.load_kube_config()
    except (ConfigException, OSError, TypeError):
        try:
            config.load_incluster_config()
        except ConfigException:
            raise BackendUnavailable(
                "no Kubernetes cluster to use: set KUBECONFIG (or ~/.kube/config), or run the control plane in one"
            ) from None
    return client.ApiClient()


def _described(pod: client.V1Pod) -> dict[str, dict]:
    """The pod spec's containers as `render` described them in the pod's annotation."""
    try:
        return json.loads((pod.metadata.annotations or {}).get(render.CONTAINERS) or "{}")
    except ValueError:
        return {}


def _state(s: client.V1ContainerStatus) -> tuple[str, float | None, int | None]:
    """(state word, when it started, how it last exited)."""
    last = s.last_state.terminated if s.last_state else None
    exit_code = last.exit_code if last else None
    if s.state.running is not None:
        started = s.state.running.started_at
        return "running", started.timestamp() if started else None, exit_code
    if s.state.terminated is not None:
        return "exited", None, s.state.terminated.exit_code
    waiting = s.state.waiting.reason if s.state.waiting else ""
    return ("restarting" if waiting == "CrashLoopBackOff" or s.restart_count else "created"), None, exit_code


def _line(container: str, raw: str) -> tuple[str, str]:
    stamp, _, text = raw.partition(" ")
    return stamp, f"{container} | {text}"


def _free_port(host: str, taken: set[int]) -> int:
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            number = s.getsockname()[1]
        if number not in taken:
            return number


def _gone(delete: Callable[..., Any], name: str, namespace: str, **kwargs: Any) -> None:
    try:
        delete(name, namespace, _request_timeout=TIMEOUT, _preload_content=False, **kwargs)
    except ApiException as e:
        if e.status != 404:
            raise


def _reason(e: Exception) -> str:
    if isinstance(e, ApiException):
        try:
            message = json.loads(e.body or "{}").get("message")
        except (ValueError, AttributeError):
            message = None
        return str(message or e.reason or f"HTTP {e.status}")[:300]
    if isinstance(e, MaxRetryError) and e.reason is not None:  # "[Errno 111] Connection refused" -> the words
        return re.sub(r"^\[Errno -?\d+\] ", "", str(e.reason).rsplit(": ", 1)[-1]).strip("')\"(")[:300]
    return type(e).__name__ if not str(e) else str(e).splitlines()[0][:300]
