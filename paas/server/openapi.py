"""The API's OpenAPI 3.1 description (`GET /api/v1/openapi.json`).

Request bodies and most answers are the JSON schemas of the models the control plane itself
validates with and answers from (the manifest, releases, events, containers, instances), and
the app-name pattern is the one `paas.names` checks, so the description cannot drift from
them. tests/test_openapi.py checks that it lists exactly Flask's routes and fuzzes a real
control plane against it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import TypeAdapter

from paas import __version__, certs, credentials
from paas.backends.base import ContainerStatus
from paas.manifest import RELOADS, RUNTIMES, Manifest
from paas.names import APP_NAME, APP_NAME_RULE
from paas.runtime_status import Instance
from paas.status import STATES
from paas.store import Event, Release

Schema = dict[str, Any]

PREFIX = "/api/v1"
ERROR_STATUSES = {
    400: "Bad input: one sentence naming what is wrong (`details`: each problem)",
    401: "Missing or invalid token",
    404: "No such app (or release, or added certificate)",
    409: "The app's state doesn't allow it, or it failed with the change (undone); the message says what to do",
    503: "A part of the pod did not answer; try again",
    507: "No space left on the data directory: the message says how much is free",
}
NAME: Schema = {"type": "string", "pattern": APP_NAME.pattern, "description": APP_NAME_RULE}
EXAMPLE_APP = "hello-flask"  # the README's quick-start sample


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Schema], **extra: Any) -> Schema:
    """An object that always has each of ``properties``."""
    return {"type": "object", "properties": properties, "required": list(properties), **extra}


def _array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def _models() -> dict[str, Schema]:
    """The JSON schemas of the models, with the models they nest, by name."""
    schemas: dict[str, Schema] = {}
    for model in (Manifest, Release, Event, ContainerStatus, Instance):
        schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
        for name, nested in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            assert schemas.get(name, nested) == nested, f"two models named {name}"
            schemas[name] = nested
    schemas["Manifest"]["properties"]["name"] = NAME  # checked by a validator pydantic can't describe
    return schemas


def _schemas() -> dict[str, Schema]:
    release, string, number, integer = _ref("Release"), {"type": "string"}, {"type": "number"}, {"type": "integer"}
    app_config = _object({
        "app": NAME,
        "version": integer,
        "vars": {"type": "object", "additionalProperties": string},
        "reload": {"enum": list(RELOADS)},
    })
    process = _object({
        "pid": integer, "ppid": integer, "container": string, "user": string, "state": string,
        "rss": integer, "memory_percent": number, "cpu_percent": number, "started": number,
        "threads": integer, "command": string,
    })
    return _models() | {
        "Error": _object({"error": string, "details": _array(string)}, additionalProperties=False),
        "Health": _object({
            "status": {"enum": ["ok", "degraded"]},
            "version": string,
            "backend": string,
            "reconciled": integer,
            # the platform's processes under `paas up`'s supervisor (none when run otherwise)
            "parts": {"type": "object", "additionalProperties": _object({
                "state": {"enum": ["up", "down"]},
                "since": number,
                "restarts": integer,
                "last_exit": _nullable(string),
            })},
            "down": _array(string),
            "events": _array(_object({"time": number, "part": string, "message": string})),
        }),
        # paas.status.describe
        "App": _object({
            "name": NAME,
            "port": integer,
            "created": number,
            "manifest": _ref("Manifest"),
            "config_version": integer,
            "problem": _nullable(string),
            "url": {"type": "string", "format": "uri"},
            "urls": _array({"type": "string", "format": "uri"}),
            "state": {"enum": list(STATES)},
            "runtime": _nullable({"enum": list(RUNTIMES)}),
            "runtime_detected": {"type": "boolean"},
            "serving": _nullable(release),
            "latest": _nullable(release),
            "revision": _nullable(string),
            "traffic": _nullable(string),
            "crashes": integer,
            "last_crash": _nullable(string),
            "instances": _array(_ref("Instance")),
            "volumes": _array(_object({"name": string, "path": string, "bytes": _nullable(integer)})),
            "sidecars": _array(_object({"name": string, "from_platform": {"type": "boolean"}, "state": string})),
            "last_failure": _nullable(release),
            "deploy_steps": _array(_object({"text": string, "at": number})),
            "sync_error": _nullable(string),
            "containers": _array(_ref("ContainerStatus")),
            "events": _array(_ref("Event")),
        }),
        "Apps": _object({"apps": _array(_ref("App"))}),
        "Applied": _object({
            "changes": _array(_object({"field": string, "old": {}, "new": {}})),
            "rollout": {"enum": ["live", "new pod", "none"]},
            "app": _ref("App"),
        }),
        "Deleted": _object({"deleted": NAME}),
        "Releases": _object({"releases": _array(release)}),
        "RolledBack": {"allOf": [release, _object({"rolls_back_to": release})]},
        "Restarted": _object({"restarted": NAME, "hard": {"type": "boolean"}, "seconds": number,
                              "serving": {"type": "boolean"}}),
        "AppConfig": app_config,
        "ConfigSet": {"allOf": [app_config, _object({"release": _nullable(release), "changed": _array(string)})]},
        "Processes": _object({"processes": _array(process)}),
        # paas.control.certificates: what is shown of a certificate (never its key)
        "Certificates": _object({
            "app": NAME,
            "https": {"type": "boolean", "description": "the app has the https sidecar (what serves them)"},
            "certificates": _array(_object({
                "source": {"enum": ["added", "platform CA"]},
                "names": _array(string),
                "issuer": string,
                "not_after": {"type": "string", "format": "date-time"},
                "fingerprint": {"type": "string", "description": "SHA-256, colon-separated hex"},
                "serves": _array(string),
            })),
            "uncovered": _array(string),
        }),
    }


def _json(schema: Schema, **media: Any) -> Schema:
    """JSON content of ``schema`` (``media``: more of its media type object, such as an example)."""
    return {"application/json": {"schema": schema, **media}}


def _with_answer(operation: Schema, status: int, summary: str, content: Schema) -> Schema:
    """``operation`` answering ``content`` with ``status`` too (not an Error)."""
    operation["responses"][str(status)] = {"description": summary, "content": content}
    return operation


def _operation(
    endpoint: str,
    summary: str,
    status: int,
    content: Schema,
    errors: tuple[int, ...] = (),
    body: Schema | None = None,
    parameters: tuple[Schema, ...] = (),
    public: bool = False,
) -> Schema:
    """One operation, answering ``content`` with ``status`` or an Error with each of
    ``errors`` (and 401 unless ``public``); its ``operationId`` is the Flask endpoint."""
    codes = sorted({*errors, *(() if public else (401,))})
    operation: Schema = {
        "operationId": endpoint,
        "summary": summary,
        "parameters": list(parameters),
        "responses": {
            str(status): {"description": summary, "content": content},
            **{str(code): {"description": ERROR_STATUSES[code], "content": _json(_ref("Error"))} for code in codes},
        },
    }
    if body is not None:
        operation["requestBody"] = body
    if public:
        operation["security"] = []
    return operation


def _on_app(endpoint: str, summary: str, status: int, content: Schema, errors: tuple[int, ...] = (),
            **kwargs: Any) -> Schema:
    """An operation on one app: an invalid name is a 400, an unknown one a 404."""
    return _operation(endpoint, summary, status, content, (400, 404, *errors), **kwargs)


def _body(content: Schema, required: bool = True) -> Schema:
    return {"required": required, "content": content}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _paths() -> dict[str, Schema]:
    manifest = {"schema": _ref("Manifest"), "example": {"name": EXAMPLE_APP, "runtime": "python"}}
    manifest_body = _body({"application/yaml": manifest, "application/json": manifest})
    password = {
        "name": credentials.HEADER, "in": "header", "required": False, "schema": {"type": "string"},
        "description": "the password of the manifest's source.repo, percent-encoded, given apart from its URL "
                       "(`--password-file`; empty: none). A stored password is kept only while source.repo "
                       "keeps its scheme, host, port and user",
    }
    variables = {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        "description": "the variables to set; null unsets one",
    }
    restart = {"type": "object", "properties": {"hard": {"type": "boolean", "default": False}}}
    rollback = {
        "type": "object",
        "properties": {
            "revision": {"type": ["string", "integer"], "description": "a release number (3 or v3) or a commit hash"},
            "wait": {"type": "boolean", "default": True, "description": "answer once the release serves"},
        },
    }
    tail = _query("tail", {"type": "integer", "minimum": 0, "maximum": 100_000, "default": 200},
                  "how many of the last lines")
    follow = _query("follow", {"type": "boolean", "default": False}, "stream new lines (1, true or yes)")
    text = {"text/plain": {"schema": {"type": "string"}}}
    pem = {"type": "string", "maxLength": certs.MAX_PEM}
    pair = {
        "type": "object",
        "required": ["certificate", "key"],
        "properties": {
            "certificate": pem | {"description": "the server's certificate, then each issuer (PEM)"},
            "key": pem | {"description": "its private key (PEM, unencrypted)"},
        },
    }
    kube_list = {
        "type": "object",
        "required": ["apiVersion", "kind", "items"],
        "properties": {"apiVersion": {"const": "v1"}, "kind": {"const": "List"},
                       "items": _array({"type": "object", "required": ["apiVersion", "kind", "metadata"]})},
        "description": "a Kubernetes v1 List of the app's objects, for `kubectl apply -f`",
    }
    export_query = (
        _query("format", {"type": "string", "enum": ["kubernetes"], "default": "kubernetes"}, "what to export as"),
        _query("kube_version", {"type": "string", "example": "1.33"},
               "the cluster's Kubernetes version: native sidecars from 1.29 (default: a current one)"),
        _query("image_prefix", {"type": "string"}, "prepended to every image (a registry path)"),
        _query("namespace", {"type": "string"}, "the objects' namespace (default: PAAS_KUBE_NAMESPACE)"),
        _query("host", {"type": "string"}, "a host name: adds an Ingress for it"),
    )
    paths: dict[str, Schema] = {
        "/healthz": {"get": _with_answer(_operation("healthz", "Liveness", 200, _json(_ref("Health")), public=True),
                                         503, "a part of the platform is down", _json(_ref("Health")))},
        "/openapi.json": {
            "get": _operation("openapi_document", "This description", 200, _json({"type": "object"}), public=True),
        },
        "/ca": {
            "get": _operation("ca_certificate", "The platform CA's certificate (PEM), to trust the apps' https",
                              200, {"application/x-pem-file": {"schema": {"type": "string"}}}, public=True),
        },
        "/apps": {
            "get": _operation("list_apps", "The apps", 200, _json(_ref("Apps"))),
            "post": _operation("create_app", "Create an app from its manifest", 201, _json(_ref("App")), (400, 409, 507),
                               body=manifest_body, parameters=(password,)),
        },
        "/apps/{name}": {
            "get": _on_app("get_app", "Describe an app", 200, _json(_ref("App"))),
            "put": _on_app("apply_app", "Apply a changed manifest", 200, _json(_ref("Applied")), (409, 507),
                           body=manifest_body, parameters=(password,)),
            "delete": _on_app("delete_app", "Delete an app", 200, _json(_ref("Deleted"))),
        },
        "/apps/{name}/releases": {
            "get": _on_app("releases", "Releases, newest first", 200, _json(_ref("Releases"))),
        },
        "/apps/{name}/export": {
            "get": _on_app("export", "The app as Kubernetes objects (YAML; its Secrets hold its credentials and "
                           "config)", 200, {"application/yaml": {"schema": kube_list}},
                           parameters=export_query),
        },
        "/apps/{name}/logs": {
            "get": _on_app("logs", "Log lines `container | line`", 200, text, parameters=(tail, follow)),
        },
        "/apps/{name}/restart": {
            "post": _on_app("restart", "Restart (hard: in a new pod)", 200, _json(_ref("Restarted")), (409, 507),
                            body=_body(_json(restart), required=False)),
        },
        "/apps/{name}/rollback": {
            "post": _on_app("rollback", "Serve a release that served before, as a new release", 201,
                            _json(_ref("RolledBack")), (409, 507), body=_body(_json(rollback), required=False)),
        },
        "/apps/{name}/config": {
            "get": _on_app("get_config", "The config", 200, _json(_ref("AppConfig"))),
            "put": _on_app("set_config", "Set or unset config variables", 200, _json(_ref("ConfigSet")), (409, 507),
                           body=_body(_json(variables, example={"GREETING": "Hi", "OLD": None}))),
        },
        "/apps/{name}/certs": {
            "get": _on_app("certificates", "The app's certificates (never a key) and the names none covers", 200,
                           _json(_ref("Certificates"))),
            "put": _on_app("add_certificate", "Add the certificate for the app's names outside the platform's "
                           "domain (replacing the one before)", 200, _json(_ref("Certificates")),
                           body=_body(_json(pair))),
            "delete": _on_app("remove_certificate", "Remove the added certificate", 200,
                              _json(_ref("Certificates"))),
        },
        "/apps/{name}/processes": {
            "get": _on_app("processes", "What runs in the pod (through its topz sidecar)", 200,
                           _json(_ref("Processes")), (409, 503)),
        },
    }
    name = {"name": "name", "in": "path", "required": True, "schema": NAME, "example": EXAMPLE_APP}
    for path, item in paths.items():
        if "{name}" in path:
            item["parameters"] = [name]
    return paths


@cache
def document() -> Schema:
    """The description, built once per process."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "paas",
            "version": __version__,
            "description": 'A git-backed PaaS. Errors are JSON `{"error": "...", "details": [...]}` with a '
                           "fitting 4xx status.",
        },
        "servers": [{"url": PREFIX}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
        },
    }
