"""The OpenAPI description lists exactly the API's routes, is valid OpenAPI, and a real
control plane keeps to it: fuzzed by schemathesis, with and without the token, it never
answers 5xx or shows a traceback, and answers only what the description says."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from helpers import ROOT, ControlPlane
from paas.server import api, openapi

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# The app the description's examples name: the fuzzing's examples reach a real app through it.
TARGET = openapi.EXAMPLE_APP


def described() -> dict[str, str]:
    """`METHOD /api/v1/path` -> operationId, for each operation of the description."""
    document = openapi.document()
    server = document["servers"][0]["url"]
    return {
        f"{method.upper()} {server}{path}": operation["operationId"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def routed(app) -> dict[str, str]:
    """`METHOD /api/v1/path` -> endpoint (without `api.`), for each Flask route under the API's prefix."""
    return {
        f"{method} {as_template(rule.rule)}": rule.endpoint.removeprefix("api.")
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(f"{api.bp.url_prefix}/")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
    }


def as_template(rule: str) -> str:
    """Flask's `/apps/<name>` (or `<string:name>`) as OpenAPI's `/apps/{name}`."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


def test_the_description_and_the_routes_match_both_ways(app):
    routes, operations = routed(app), described()
    assert not routes.keys() - operations.keys(), f"routes not described: {sorted(routes.keys() - operations.keys())}"
    assert not operations.keys() - routes.keys(), f"described, not routed: {sorted(operations.keys() - routes.keys())}"
    assert operations == routes, "each operationId must be the Flask endpoint that serves it"


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        yield from ([node["$ref"]] if isinstance(node.get("$ref"), str) else [])
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_the_description_is_valid_openapi_and_every_reference_resolves():
    document = openapi.document()
    schemathesis.openapi.from_dict(document).validate()
    components = document["components"]["schemas"]
    missing = {ref for ref in refs(document) if ref.removeprefix("#/components/schemas/") not in components}
    assert not missing, f"references to no schema: {sorted(missing)}"


def test_it_is_served_without_the_token(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.get_json() == openapi.document()


@pytest.fixture(scope="module")
def fuzzed(control_plane: ControlPlane) -> Iterator[schemathesis.BaseSchema]:
    """The description as the control plane serves it, with the example app created. (Loaded
    from a URL, schemathesis leaves out the operation serving it: the test above covers it.)"""
    control_plane.create((ROOT / "samples" / "hello-flask" / "paas.yaml").read_text())
    yield schemathesis.openapi.from_url(f"{control_plane.url}/api/v1/openapi.json")
    for app in control_plane.api("GET", "/apps").json()["apps"]:
        control_plane.api("DELETE", f"/apps/{app['name']}")


def as_it_was(cp: ControlPlane) -> None:
    """Only the example app, as a fuzzed request may have deleted it or created others
    (each app's pod is processes of its own)."""
    names = {app["name"] for app in cp.api("GET", "/apps").json()["apps"]}
    for name in names - {TARGET}:
        assert cp.api("DELETE", f"/apps/{name}").status_code == 200
    if TARGET not in names:
        cp.create((ROOT / "samples" / "hello-flask" / "paas.yaml").read_text())


def fuzz(case: schemathesis.Case, cp: ControlPlane) -> None:
    """One generated request, with and without the token: an answer the description lists,
    never a 5xx or a traceback; without the token, a 401 unless the route is public."""
    if case.query:
        case.query.pop("follow", None)  # streams until the client hangs up: not a request to fuzz
    public = case.operation.definition.raw.get("security") == []
    for token in (None, cp.token):
        response = case.call(headers={"Authorization": f"Bearer {token}" if token else None}, timeout=60)
        case.validate_response(response, checks=CHECKS)
        assert "Traceback" not in response.text, response.text
        assert token or public or response.status_code >= 400, f"{case.operation.label} answered {response.status_code} without the token"
    as_it_was(cp)


@pytest.mark.slow
def test_fuzzed_the_api_keeps_to_its_description(fuzzed: schemathesis.BaseSchema, control_plane: ControlPlane):
    """Each operation fuzzed by hypothesis from its description (schemathesis generates the
    cases; its pytest plugin is not used, as it relies on pytest's private attributes)."""
    failures = []
    operations = [result.ok() for result in fuzzed.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def each(case: schemathesis.Case) -> None:
            fuzz(case, control_plane)

        try:
            each()
        except Exception as e:  # every operation is fuzzed; all failures are reported together
            failures.append(f"{operation.label}: {e}")
    assert not failures, "\n\n".join(failures)
