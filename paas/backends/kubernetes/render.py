"""A pod spec rendered as Kubernetes objects: what `paas export --format kubernetes` prints and
what the kubernetes backend applies.

One Deployment (one replica) whose pod template is the pod spec: the runtime is the main
container; git-sync and the sidecars are native sidecars (``initContainers`` with
``restartPolicy: Always``) from Kubernetes 1.29, ordinary containers before. Beside it: a
Secret per secret volume (git credentials, mounted as a password file), one Secret holding the
documents the control plane pushes (the runtime's live settings with the config values, the
config sidecar's config) so the pod starts from them without a control plane, a
PersistentVolumeClaim per app volume, a Service for the app's port and, when asked, an Ingress.

Variables whose value a push keeps current (``live_env``) are left out of the template: the
container reads the same document from the pushes Secret (``Push.source_env``), so the
template changes only when the pod spec's digest does — a push is never a rollout.

With ``host_network`` (a development mode for clusters with neither kube-proxy nor a load
balancer) the pod uses the node's network: the app listens on its port at ``apps_host``,
and each internal port is the free node port ``ports`` gives it; probes ask that address.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping

from paas import __version__
from paas.backends.kubernetes.options import Options
from paas.podmodel import APP, PERSISTENT, SECRET, Container, PodSpec, Port

MANAGED_BY = "paas"
INSTANCE_LABEL = "paas.dev/instance"  # which control plane made it (several may share a namespace)
DIGEST = "paas.dev/digest"
PORTS = "paas.dev/ports"  # host-network mode: the node ports the pod's internal ports got
# What the backend reads back from a pod: each container's role, whether the platform added
# it, its status endpoint and its ports as rendered (name -> [number, published]).
CONTAINERS = "paas.dev/containers"
PUSHES_DIR = "/etc/paas/pushes"
NATIVE_SIDECARS = (1, 29)
GROUP = 65533  # the uid/gid every paas image runs as: volumes are made its group's
VOLUME_SIZE = "1Gi"


def labels(app: str, instance: str = "") -> dict[str, str]:
    found = {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": app,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "paas",
    }
    return found | ({INSTANCE_LABEL: instance} if instance else {})


def selector(app: str, instance: str = "") -> str:
    """The label selector of everything rendered for ``app``."""
    return ",".join(f"{k}={v}" for k, v in labels(app, instance).items() if k != "app.kubernetes.io/part-of")


def listen_host(published: bool, options: Options) -> str:
    """Where a port listens: on every address of the pod's own network; on the node's network,
    the app's port at ``apps_host`` and the internal ones on loopback."""
    if not options.host_network:
        return "0.0.0.0"
    return options.apps_host if published else "127.0.0.1"


def _matching(meta: dict[str, str]) -> dict[str, str]:
    """The labels that select the app's pods (those that never change)."""
    return {k: v for k, v in meta.items() if k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}


def internal_ports(spec: PodSpec) -> list[str]:
    """The ``container/port`` keys host-network mode must give node ports (all but published ones)."""
    return [f"{c.name}/{p.name}" for c in spec.containers for p in c.ports if not p.publish]


def render(spec: PodSpec, options: Options, pushes: Mapping[str, Mapping] | None = None) -> list[dict]:
    """The objects for ``spec``, in the order to apply them. ``pushes`` overrides the documents
    of the pushes Secret (container name -> body); by default each push's own body."""
    meta = labels(spec.app, options.instance)
    objects: list[dict] = []
    for volume in spec.volumes:
        if volume.kind == SECRET:
            objects.append(_secret(f"{spec.app}-{volume.name}", meta, options, volume.files))
        elif volume.kind == PERSISTENT:
            objects.append(_claim(f"{spec.app}-{volume.name}", meta, options))
    documents = {
        _push_file(c, push.path): json.dumps(dict((pushes or {}).get(c.name, push.body)), sort_keys=True)
        for c in spec.containers
        for push in c.pushes
        if push.source_env
    }
    if documents:
        objects.append(_secret(f"{spec.app}-pushes", meta, options, documents))
    objects.append(_deployment(spec, options, meta, bool(documents)))
    published = spec.published
    if published:
        objects.append(_service(spec.app, meta, options, published))
        if options.ingress_host:
            objects.append(_ingress(spec.app, meta, options, published[0]))
    return objects


def to_yaml(objects: list[dict]) -> str:
    """One YAML document, a ``v1`` List (as `kubectl get -o yaml` prints several objects), which
    `kubectl apply -f` takes whole."""
    import yaml

    return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objects}, sort_keys=False,
                          default_flow_style=False)


def _metadata(name: str, meta: dict[str, str], options: Options, **extra: object) -> dict:
    return {"name": name, "namespace": options.namespace, "labels": dict(meta), **extra}


def _secret(name: str, meta: dict[str, str], options: Options, files: Mapping[str, str]) -> dict:
    data = {key: base64.b64encode(value.encode()).decode() for key, value in sorted(files.items())}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _metadata(name, meta, options), "type": "Opaque",
            "data": data}


def _claim(name: str, meta: dict[str, str], options: Options) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(name, meta, options),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": VOLUME_SIZE}}},
    }


def _push_file(container: Container, path: str) -> str:
    return f"{container.name}-{path.strip('/').replace('/', '-')}.json"


def _deployment(spec: PodSpec, options: Options, meta: dict[str, str], has_pushes: bool) -> dict:
    numbers = _numbers(spec, options)
    main = [c for c in spec.containers if c.role == APP]
    helpers = [c for c in spec.containers if c.role != APP]
    native = options.kube_version >= NATIVE_SIDECARS
    pod: dict = {
        "terminationGracePeriodSeconds": options.grace_period,
        "securityContext": {"fsGroup": GROUP},
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "volumes": _volumes(spec, has_pushes),
    }
    rendered = {c.name: _container(spec, c, options, numbers) for c in spec.containers}
    if native:
        pod["initContainers"] = [rendered[c.name] | {"restartPolicy": "Always"} for c in helpers]
        pod["containers"] = [rendered[c.name] for c in main]
    else:
        pod["containers"] = [rendered[c.name] for c in helpers + main]
    if spec.share_pid:
        pod["shareProcessNamespace"] = True
    if options.host_network:
        pod["hostNetwork"] = True
        pod["dnsPolicy"] = "ClusterFirstWithHostNet"
    annotations = {DIGEST: spec.digest, CONTAINERS: json.dumps({
        c.name: {
            "role": c.role,
            "platform": c.platform,
            "status": {"port": c.status.port, "path": c.status.path} if c.status else None,
            "ports": {p.name: [numbers[(c.name, p.name)], p.publish] for p in c.ports},
        }
        for c in spec.containers
    }, sort_keys=True)}
    if options.host_network:
        annotations[PORTS] = json.dumps(dict(sorted(options.ports.items())))
    # On one node's network a second pod can't bind the same ports: replace, don't surge.
    strategy = (
        {"type": "Recreate"}
        if options.host_network
        else {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec.app, meta, options, annotations={"paas.dev/version": __version__}),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": _matching(meta)},
            "strategy": strategy,
            "template": {"metadata": {"labels": dict(meta), "annotations": annotations}, "spec": pod},
        },
    }


def _numbers(spec: PodSpec, options: Options) -> dict[tuple[str, str], int]:
    """Each port's number as the pod's containers reach it."""
    numbers = {}
    for c in spec.containers:
        for p in c.ports:
            key = f"{c.name}/{p.name}"
            if options.host_network and not p.publish:
                if key not in options.ports:
                    raise ValueError(f"host-network mode needs a node port for {key}")
                numbers[(c.name, p.name)] = options.ports[key]
            else:
                numbers[(c.name, p.name)] = p.number
    return numbers


def _volumes(spec: PodSpec, has_pushes: bool) -> list[dict]:
    found: list[dict] = []
    for volume in spec.volumes:
        name = _volume_name(volume.name)
        if volume.kind == SECRET:
            found.append({"name": name, "secret": {"secretName": f"{spec.app}-{volume.name}", "defaultMode": 0o440}})
        elif volume.kind == PERSISTENT:
            found.append({"name": name, "persistentVolumeClaim": {"claimName": f"{spec.app}-{volume.name}"}})
        else:  # the pod's own, and a cache (per pod here: pods may land on any node)
            found.append({"name": name, "emptyDir": {}})
    if has_pushes:
        found.append({"name": "pushes", "secret": {"secretName": f"{spec.app}-pushes", "defaultMode": 0o440}})
    return found


def _volume_name(name: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", name.lower())[:63]


def _container(spec: PodSpec, container: Container, options: Options, numbers: dict[tuple[str, str], int]) -> dict:
    env = {k: v for k, v in container.env.items() if k not in container.live_env}
    for port in container.ports:
        if port.bind_env:
            env[port.bind_env] = f"{listen_host(port.publish, options)}:{numbers[(container.name, port.name)]}"
    env |= {var: f"127.0.0.1:{numbers[peer]}" for var, peer in container.peers.items() if peer in numbers}
    mounts = [{"name": _volume_name(m.volume), "mountPath": m.path, **({"readOnly": True} if m.read_only else {})}
              for m in container.mounts]
    sources = [(push, f"{PUSHES_DIR}/{_push_file(container, push.path)}") for push in container.pushes if push.source_env]
    for push, path in sources:
        env[push.source_env] = path  # type: ignore[index]
    if sources:
        mounts.append({"name": "pushes", "mountPath": PUSHES_DIR, "readOnly": True})
    rendered: dict = {
        "name": container.name,
        "image": f"{options.image_prefix}{container.image}",
        "imagePullPolicy": "IfNotPresent",
        "command": list(container.command),
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "ports": [_port(p, numbers[(container.name, p.name)]) for p in container.ports],
        "volumeMounts": mounts,
    }
    if container.resources is not None:
        limits = {}
        if container.resources.memory:
            limits["memory"] = memory(container.resources.memory)
        if container.resources.cpus:
            limits["cpu"] = f"{round(container.resources.cpus * 1000)}m"
        rendered["resources"] = {"limits": limits}
    if container.readiness is not None:
        port = next(p for p in container.ports if p.name == container.readiness.port)
        probe: dict = {"path": container.readiness.path, "port": numbers[(container.name, port.name)]}
        if options.host_network:
            probe["host"] = listen_host(port.publish, options)
        rendered["readinessProbe"] = {"httpGet": probe, "periodSeconds": 2, "failureThreshold": 3}
    return rendered


def _port(port: Port, number: int) -> dict:
    found: dict = {"containerPort": number, "protocol": "TCP"}
    if port.publish:
        found["name"] = "http"  # port names are unique in a pod: only the app's is named
    return found


def memory(docker: str) -> str:
    """Docker's memory syntax (``256m``, ``1g``, bytes) as a Kubernetes quantity."""
    text = docker.strip().lower()
    units = {"b": "", "k": "Ki", "m": "Mi", "g": "Gi"}
    if text and text[-1] in units:
        return f"{text[:-1]}{units[text[-1]]}"
    return text


def _service(app: str, meta: dict[str, str], options: Options, published: list[Port]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(app, meta, options),
        "spec": {
            "selector": _matching(meta),
            "ports": [{"name": "http", "port": p.number, "targetPort": p.number, "protocol": "TCP"}
                      for p in published[:1]],
        },
    }


def _ingress(app: str, meta: dict[str, str], options: Options, port: Port) -> dict:
    backend = {"service": {"name": app, "port": {"number": port.number}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _metadata(app, meta, options),
        "spec": {"rules": [{"host": options.ingress_host,
                            "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}]},
    }
