"""The console's HTTP surface, which needs no browser (so it runs in every tier): the page is
served with a strict Content-Security-Policy and without the token, and the console's data
and event stream want the token."""

from __future__ import annotations


def test_the_console_is_served_with_strict_headers_and_its_parts_need_the_token(client, auth):
    token = auth["Authorization"].removeprefix("Bearer ")
    page = client.get("/")
    assert page.status_code == 200
    csp = dict(part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";"))
    assert csp["script-src"] == "'self'" and csp["frame-ancestors"] == "'none'" and csp["default-src"] == "'none'"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert token not in page.get_data(as_text=True)
    refused = client.get("/console/apps")
    assert refused.status_code == 401 and refused.get_json()["error"].startswith("missing token")
    assert client.get("/console/apps", headers=auth).status_code == 200
    events = client.get("/console/events", headers={"Authorization": "Bearer nope"})
    assert events.status_code == 401
