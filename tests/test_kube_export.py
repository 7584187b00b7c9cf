"""`paas export NAME --format kubernetes`: the app as Kubernetes objects, valid for the version
asked (kubernetes-validate --strict, offline), shaped as the pod model says — native sidecars
from 1.29, one PID namespace when a sidecar needs it, secrets only in Secrets — and, for 1.20,
accepted by a real API server (server-side dry-run, then a real apply)."""

from __future__ import annotations

import base64
import json
import os

import kubernetes_validate
import pytest
import yaml

MANIFEST = """\
name: shop
runtime: python
sidecars: [topz, config]
config: {reload: signal}
volumes: {data: /data}
resources: {memory: 256m, cpus: 0.5}
"""


@pytest.fixture
def shop(client, auth):
    assert client.post("/api/v1/apps", data=MANIFEST, headers=auth | {"Content-Type": "application/yaml"}).status_code == 201
    assert client.put("/api/v1/apps/shop/config", json={"API_KEY": "k-very-secret"}, headers=auth,
                      query_string={}).status_code in (200, 409)
    return client


def export(client, auth, **params) -> list[dict]:
    response = client.get("/api/v1/apps/shop/export", headers=auth, query_string=params)
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/yaml"
    document = yaml.safe_load(response.get_data(as_text=True))
    assert (document["apiVersion"], document["kind"]) == ("v1", "List")
    return document["items"]


def by_kind(objects: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for obj in objects:
        found.setdefault(obj["kind"], []).append(obj)
    return found


@pytest.mark.parametrize("version", ["1.28", "1.29", "1.33", "1.37"])
def test_every_export_is_valid_for_its_version(shop, auth, version):
    for obj in export(shop, auth, kube_version=version, host="shop.example.com"):
        # Raises ValidationError naming each problem (an unknown field among them: --strict).
        assert kubernetes_validate.validate(obj, f"{version}.0", strict=True) == version, obj["kind"]


def test_the_pod_model_rendered_as_a_deployment(shop, auth):
    objects = by_kind(export(shop, auth, host="shop.example.com", image_prefix="registry.example.com/team/"))
    [deployment] = objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["git-sync", "topz", "config"]
    assert all(c["restartPolicy"] == "Always" for c in pod["initContainers"])  # native sidecars
    assert [c["name"] for c in pod["containers"]] == ["runtime"]
    assert pod["shareProcessNamespace"] is True  # topz (and config in signal mode) see every process
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert all(c["image"].startswith("registry.example.com/team/paas-") for c in pod["containers"] + pod["initContainers"])
    runtime = pod["containers"][0]
    assert runtime["resources"] == {"limits": {"memory": "256Mi", "cpu": "500m"}}
    assert runtime["readinessProbe"]["httpGet"]["path"] == "/"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["workspace"]
    assert volumes["vol-data"]["persistentVolumeClaim"]["claimName"] == "shop-vol-data"
    assert [c["metadata"]["name"] for c in objects["PersistentVolumeClaim"]] == ["shop-vol-data"]
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "shop" and labels["app.kubernetes.io/managed-by"] == "paas"
    [service] = objects["Service"]
    port = runtime["ports"][0]["containerPort"]
    assert service["spec"]["ports"][0]["targetPort"] == port
    [ingress] = objects["Ingress"]
    assert ingress["spec"]["rules"][0]["host"] == "shop.example.com"


def test_credentials_and_config_are_in_secrets_only(shop, auth):
    objects = by_kind(export(shop, auth))
    [deployment] = objects["Deployment"]
    assert "k-very-secret" not in json.dumps(deployment)
    secrets = {s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
               for s in objects["Secret"]}
    settings = json.loads(secrets["shop-pushes"]["runtime-settings.json"])
    assert settings["config"] == {"API_KEY": "k-very-secret"}
    assert json.loads(secrets["shop-pushes"]["config-config.json"])["vars"] == {"API_KEY": "k-very-secret"}
    git_sync = next(c for c in deployment["spec"]["template"]["spec"]["initContainers"] if c["name"] == "git-sync")
    env = {e["name"]: e["value"] for e in git_sync["env"]}
    assert env["GITSYNC_PASSWORD_FILE"] == "/etc/paas/secrets/git-password"
    assert secrets["shop-secrets"]["git-password"]  # the app's pull token, as a file


def test_the_pod_credential_is_a_secret_mounted_into_the_containers_with_control_endpoints(shop, auth):
    objects = by_kind(export(shop, auth))
    [credential] = [s for s in objects["Secret"] if s["metadata"]["name"] == "shop-credential"]
    secret = base64.b64decode(credential["data"]["token"]).decode()
    assert len(secret) == 64
    [deployment] = objects["Deployment"]
    assert secret not in json.dumps(deployment)  # a file's path in the env, never the secret
    pod = deployment["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "credential")
    assert volume["secret"] == {"secretName": "shop-credential", "defaultMode": 0o440}  # fsGroup 65533 reads it
    variables = {"git-sync": "PAAS_SYNC_TOKEN_FILE", "runtime": "PAAS_STATUS_TOKEN_FILE", "topz": "TOPZ_TOKEN_FILE",
                 "config": "CONFIG_TOKEN_FILE"}
    for container in pod["initContainers"] + pod["containers"]:
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env[variables[container["name"]]] == "/etc/paas/credential/token"
        assert {"name": "credential", "mountPath": "/etc/paas/credential", "readOnly": True} in container["volumeMounts"]


def test_before_1_29_sidecars_are_ordinary_containers(shop, auth):
    [deployment] = by_kind(export(shop, auth, kube_version="1.28"))["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert [c["name"] for c in pod["containers"]] == ["git-sync", "topz", "config", "runtime"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"kube_version": "latest"}, "the Kubernetes version must look like 1.33, not 'latest'"),
        ({"format": "helm"}, "format must be kubernetes (the only export there is)"),
        ({"namespace": "Bad_NS"}, "namespace 'Bad_NS' is not a DNS label (lowercase letters, digits and '-')"),
        ({"host": "-x-"}, "host '-x-' is not a DNS name"),
        ({"image_prefix": "reg istry/"},
         "image prefix 'reg istry/' must be a registry path ending in '/', like registry.example.com/team/"),
    ],
)
def test_bad_export_options_get_one_sentence(shop, auth, params, message):
    response = shop.get("/api/v1/apps/shop/export", headers=auth, query_string=params)
    assert response.status_code == 400
    assert response.get_json()["error"] == message


@pytest.mark.kubernetes
@pytest.mark.slow
def test_the_1_20_shape_is_accepted_by_a_real_api_server(shop, auth, kube_cluster):
    from kubernetes import client, config

    api = config.new_client_from_config(str(kube_cluster))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    namespace = "paas-export"
    core.patch_namespace(namespace, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                         field_manager="test", _content_type="application/apply-patch+yaml")
    objects = export(shop, auth, kube_version="1.20", namespace=namespace, host="shop.example.com")
    appliers = {
        "Secret": core.patch_namespaced_secret,
        "PersistentVolumeClaim": core.patch_namespaced_persistent_volume_claim,
        "Deployment": apps.patch_namespaced_deployment,
        "Service": core.patch_namespaced_service,
        "Ingress": client.NetworkingV1Api(api).patch_namespaced_ingress,
    }
    try:
        for dry_run in ("All", None):
            for obj in objects:
                kwargs = {"dry_run": dry_run} if dry_run else {}
                applied = appliers[obj["kind"]](obj["metadata"]["name"], namespace, obj, field_manager="test",
                                                _content_type="application/apply-patch+yaml", **kwargs)
                assert applied.metadata.name == obj["metadata"]["name"]
        stored = apps.read_namespaced_deployment("shop", namespace)
        # 1.20 keeps what it knows: the pod as rendered, no field dropped on the way.
        containers = [c.name for c in stored.spec.template.spec.containers]
        assert containers == ["git-sync", "topz", "config", "runtime"]
        assert stored.spec.template.spec.share_process_namespace is True
    finally:
        core.delete_namespace(namespace)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kubeconfig", "error"),
    [
        (None, "error: no Kubernetes cluster to use: set KUBECONFIG (or ~/.kube/config), or run the control plane in one"),
        ("dead", "error: the Kubernetes API server at https://127.0.0.1:{port} did not answer: Connection refused"),
    ],
)
def test_up_without_a_reachable_cluster_says_so_in_one_sentence(tmp_path, kubeconfig, error):
    import subprocess
    import sys

    from helpers import free_port

    port = free_port()  # nothing listens there
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {"HOME": str(tmp_path), "PAAS_DATA": str(tmp_path / "data")}
    if kubeconfig == "dead":
        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        }))
        env["KUBECONFIG"] = str(path)
    done = subprocess.run([sys.executable, "-m", "paas.cli", "up", "--backend", "kubernetes", "--port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == error.format(port=port)


def test_the_https_sidecar_gets_its_certificate_from_a_secret(client, auth):
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID

    created = client.post("/api/v1/apps", data="name: vault\nruntime: python\nsidecars: [https]\nhosts: [vault.example.com]\n",
                          headers=auth | {"Content-Type": "application/yaml"})
    assert created.status_code == 201, created.get_json()
    response = client.get("/api/v1/apps/vault/export", headers=auth)
    objects = by_kind(yaml.safe_load(response.get_data(as_text=True))["items"])
    [deployment] = objects["Deployment"]
    assert "PRIVATE KEY" not in json.dumps(deployment)
    [tls] = [s for s in objects["Secret"] if s["metadata"]["name"] == "vault-tls"]
    files = {k: base64.b64decode(v) for k, v in tls["data"].items()}
    assert b"PRIVATE KEY" in files["tls.key"]
    cert = x509.load_pem_x509_certificate(files["tls.crt"])
    ca = x509.load_pem_x509_certificate(client.get("/api/v1/ca").get_data())
    cert.verify_directly_issued_by(ca)  # raises unless the platform CA signed it
    names = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    # The platform CA vouches for the platform's names only; vault.example.com is its owner's to add.
    assert names.get_values_for_type(x509.DNSName) == ["vault.localhost"]
    pod = deployment["spec"]["template"]["spec"]
    https = next(c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == "https")
    assert {"name": "tls", "mountPath": "/etc/paas/tls", "readOnly": True} in https["volumeMounts"]
    assert {"name": "tls", "secret": {"secretName": "vault-tls", "defaultMode": 288}} in pod["volumes"]
    assert {"name": "CERT_DIR", "value": "/etc/paas/tls"} in https["env"]


def test_an_added_certificate_rides_in_the_tls_secret_beside_the_platform_cas(client, auth):
    from tls_harness import make_ca, make_leaf

    created = client.post("/api/v1/apps", data="name: vault\nruntime: python\nsidecars: [https]\nhosts: [vault.example.com]\n",
                          headers=auth | {"Content-Type": "application/yaml"})
    assert created.status_code == 201, created.get_json()
    leaf = make_leaf(make_ca("Vault CA"), ["vault.example.com"])
    added = client.put("/api/v1/apps/vault/certs", headers=auth, json={"certificate": leaf.cert_pem, "key": leaf.key_pem})
    assert added.status_code == 200, added.get_json()
    objects = by_kind(yaml.safe_load(client.get("/api/v1/apps/vault/export", headers=auth).get_data(as_text=True))["items"])
    [tls] = [s for s in objects["Secret"] if s["metadata"]["name"] == "vault-tls"]
    files = {k: base64.b64decode(v).decode() for k, v in tls["data"].items()}
    assert sorted(files) == ["added.crt", "added.key", "tls.crt", "tls.key"]
    assert (files["added.crt"], files["added.key"]) == (leaf.cert_pem, leaf.key_pem)
    assert "PRIVATE KEY" not in json.dumps(objects["Deployment"])
