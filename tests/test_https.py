"""HTTPS for apps: the https sidecar on its own, an app with `sidecars: [https]` verified
against the platform CA (`paas ca`) by its host name, and the router in front of every app
(by Host for plain HTTP, by SNI for TLS). Real processes, real TLS, real git pushes."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from helpers import free_port, peer_fingerprint, stdlib_app, stdlib_manifest, wait_for
from paas_https.certs import fingerprint, self_signed
from tls_harness import key_pem, make_ca, make_leaf

pytestmark = pytest.mark.slow


def _get(port: int, host: str, path: str = "/", context: ssl.SSLContext | None = None,
         server_name: str | None = None) -> tuple[int, dict[str, str], str]:
    """GET ``path`` from 127.0.0.1:``port`` naming ``host`` (TLS with ``context``, SNI ``server_name``)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = context.wrap_socket(raw, server_hostname=server_name or host) if context else raw
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.sock = sock
    conn.request("GET", path, headers={"Host": host})
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def _trusting(ca_pem: str, tmp: Path) -> ssl.SSLContext:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "ca.pem"
    path.write_text(ca_pem)
    return ssl.create_default_context(cafile=str(path))


def _insecure() -> ssl.SSLContext:
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    return insecure


def _shown(port: int, server_name: str | None) -> str:
    """The fingerprint of the certificate a handshake asking for ``server_name`` (None: no SNI) is shown."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            _insecure().wrap_socket(raw, server_hostname=server_name) as tls:
        return peer_fingerprint(tls)


# -- the sidecar on its own ------------------------------------------------------------


@pytest.fixture
def legacy(tmp_path: Path):
    """An unchanged plain-HTTP service on a free loopback port (the seed's legacy service)."""
    app = stdlib_app(tmp_path / "legacy", "legacy says hi")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "server.py"], cwd=app, env={"PORT": str(port), "PATH": "/usr/bin"})
    wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/", timeout=1).ok, 20, what="legacy service")
    yield port
    proc.kill()
    proc.wait()


def _sidecar(proxy_port: int, tmp: Path, **env: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        ["paas-https"], env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin", "HTTPS_PORT": str(port),
                             "PROXY_PORT": str(proxy_port), **env},
        stdout=(tmp / "https.log").open("ab"), stderr=subprocess.STDOUT,
    )
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    wait_for(lambda: _get(port, "localhost", context=insecure)[0] == 200, 20, what="the https sidecar")
    return proc, port


def test_sidecar_self_signed_forwards_with_forwarded_headers(legacy, tmp_path):
    proc, port = _sidecar(legacy, tmp_path)
    try:
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        status, headers, body = _get(port, "localhost", context=insecure)
        assert (status, body) == (200, "legacy says hi")
        assert "strict-transport-security" not in headers  # off by default
        with pytest.raises(ssl.SSLCertVerificationError):  # self-signed: not trusted by default
            _get(port, "localhost", context=ssl.create_default_context())
        assert "fingerprint" in (tmp_path / "https.log").read_text().lower()
    finally:
        proc.terminate()
        proc.wait(10)


def test_sidecar_redirects_plain_http_and_sends_hsts_when_asked(legacy, tmp_path):
    proc, port = _sidecar(legacy, tmp_path, HTTPS_REDIRECT="1", HSTS_MAX_AGE="600", HTTPS_REDIRECT_PORT="9443")
    try:
        status, headers, _ = _get(port, "app.localhost:18080", "/a?b=1")
        assert status == 308 and headers["location"] == "https://app.localhost:9443/a?b=1"
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        status, headers, _ = _get(port, "localhost", context=insecure)
        assert status == 200 and headers["strict-transport-security"] == "max-age=600"
    finally:
        proc.terminate()
        proc.wait(10)


# -- an app with the https sidecar, behind the router ----------------------------------------


@pytest.fixture(scope="module")
def secure_app(control_plane, tmp_path_factory):
    """`secure` (sidecars: [https], a second host name) pushed once; `plain` created, never pushed."""
    repo = stdlib_app(tmp_path_factory.mktemp("src") / "secure", "secure one")
    manifest = stdlib_manifest("secure") + "sidecars: [https]\nhosts: [secure.example.test]\n"
    created = control_plane.create(manifest)
    control_plane.create(stdlib_manifest("plain"))
    control_plane.push(repo, "secure")
    return control_plane, created


def test_status_shows_the_router_urls_first(secure_app):
    cp, created = secure_app
    assert created["urls"] == [
        f"https://secure.localhost:{cp.router_tls_port}/",
        f"http://secure.localhost:{cp.router_port}/",
        f"https://secure.example.test:{cp.router_tls_port}/",
        f"http://secure.example.test:{cp.router_port}/",
        f"https://127.0.0.1:{created['port']}/",
    ]
    shown = cp.cli("status", "secure").stdout.splitlines()
    assert shown[2:4] == [f"urls:      https://secure.localhost:{cp.router_tls_port}/",
                          f"           http://secure.localhost:{cp.router_port}/"]


def test_https_app_verified_against_paas_ca_by_host_name(secure_app, tmp_path):
    cp, created = secure_app
    ca = cp.cli("ca")
    assert ca.returncode == 0 and ca.stdout.startswith("-----BEGIN CERTIFICATE-----")
    trusted = _trusting(ca.stdout, tmp_path)
    # Through the router, by SNI, with the app's own certificate (TLS ends in its sidecar).
    status, _, body = _get(cp.router_tls_port, "secure.localhost", context=trusted)
    assert (status, body) == (200, "secure one")
    # A name outside the platform's domain: the CA may not vouch for it (`paas certs add` does, below).
    with pytest.raises(ssl.SSLCertVerificationError):
        _get(cp.router_tls_port, "secure.example.test", context=trusted)
    # At its own port, which now speaks TLS: the certificate covers 127.0.0.1 too.
    status, _, body = _get(created["port"], "127.0.0.1", context=trusted)
    assert (status, body) == (200, "secure one")
    # A certificate some other CA signed is refused by the same client.
    with pytest.raises(ssl.SSLCertVerificationError):
        _get(created["port"], "127.0.0.1", context=ssl.create_default_context())


def test_router_routes_by_host_and_answers_unknown_and_not_serving(secure_app):
    cp, _ = secure_app
    status, _, body = _get(cp.router_port, "secure.localhost")
    assert (status, body) == (200, "secure one")  # plain HTTP stays available on the router
    status, headers, body = _get(cp.router_port, "nobody.localhost")
    assert status == 404 and "No app is served at nobody.localhost" in body
    assert headers["content-type"].startswith("text/html")
    status, headers, body = _get(cp.router_port, "plain.localhost")
    assert status == 503 and "plain is not serving yet" in body and headers["retry-after"] == "2"
    # TLS for an app without the https sidecar: refused, not answered with someone else's certificate.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _get(cp.router_tls_port, "plain.localhost", context=ssl.create_default_context())


def test_a_host_name_serves_one_app(secure_app):
    cp, _ = secure_app
    taken = cp.api("POST", "/apps", data=stdlib_manifest("thief") + "hosts: [secure.example.test]\n",
                   headers={"Content-Type": "application/yaml"})
    assert taken.status_code == 409
    assert taken.json()["error"] == "host name secure.example.test is already served by the app secure"
    assert cp.api("GET", "/apps/thief").status_code == 404


def test_a_rotated_certificate_is_served_to_new_connections_without_dropping_open_ones(legacy, tmp_path):
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    first, first_key = self_signed(["localhost"])
    cert_file.write_bytes(first)
    key_file.write_bytes(first_key)
    proc, port = _sidecar(legacy, tmp_path, CERT_FILE=str(cert_file), KEY_FILE=str(key_file),
                          CERT_RELOAD_SECONDS="0.2")
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    try:
        held = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=insecure)
        held.request("GET", "/")
        assert held.getresponse().read() == b"legacy says hi"
        assert peer_fingerprint(held.sock) == fingerprint(first)

        second, second_key = self_signed(["localhost"])
        for path, data in ((key_file, second_key), (cert_file, second)):  # rotate as a secret volume does: replace
            (tmp_path / "next").write_bytes(data)
            (tmp_path / "next").replace(path)

        def new_handshake() -> str:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                    insecure.wrap_socket(raw, server_hostname="localhost") as tls:
                return peer_fingerprint(tls)

        wait_for(lambda: new_handshake() == fingerprint(second), 20, what="the rotated certificate")
        # The connection opened before the rotation is still served, on the session it made.
        held.request("GET", "/again")
        assert held.getresponse().read() == b"legacy says hi"
        assert peer_fingerprint(held.sock) == fingerprint(first)
        held.close()

        # A pair that does not load leaves the last good certificate in use, said once in the log.
        cert_file.write_bytes(b"not a certificate")
        wait_for(lambda: "did not load" in (tmp_path / "https.log").read_text(), 20, what="the bad pair logged")
        assert new_handshake() == fingerprint(second)
    finally:
        proc.terminate()
        proc.wait(10)



def test_a_pair_of_cert_dir_is_served_by_sni_for_its_names_and_follows_the_directory(legacy, tmp_path):
    """CERT_FILE's pair for every name by default; each NAME.crt + NAME.key of CERT_DIR for the
    names it covers — added, rotated and removed while serving, open connections kept."""
    certs = tmp_path / "tls"
    certs.mkdir()

    def put(stem: str, pair: tuple[bytes, bytes]) -> None:  # the key first, each file replaced whole
        for suffix, data in (("key", pair[1]), ("crt", pair[0])):
            (tmp_path / "next").write_bytes(data)
            (tmp_path / "next").replace(certs / f"{stem}.{suffix}")

    default, shop = self_signed(["secure.localhost", "127.0.0.1"]), self_signed(["shop.example.org"])
    put("tls", default)
    put("added", shop)
    proc, port = _sidecar(legacy, tmp_path, CERT_FILE=str(certs / "tls.crt"), KEY_FILE=str(certs / "tls.key"),
                          CERT_DIR=str(certs), CERT_RELOAD_SECONDS="0.2")
    try:
        assert _shown(port, "shop.example.org") == fingerprint(shop[0])
        assert _shown(port, "SHOP.Example.Org") == fingerprint(shop[0])  # names are case-insensitive
        assert _shown(port, "secure.localhost") == fingerprint(default[0])
        assert _shown(port, "elsewhere.example.org") == fingerprint(default[0])
        assert _shown(port, None) == fingerprint(default[0])  # a client sending no SNI
        assert _get(port, "shop.example.org", context=_insecure())[::2] == (200, "legacy says hi")

        held = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=_insecure())
        held.connect()
        held.sock = _insecure().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                            server_hostname="shop.example.org")
        held.request("GET", "/")
        assert held.getresponse().read() == b"legacy says hi"

        wildcard, rotated = self_signed(["*.example.net"]), self_signed(["shop.example.org"])
        put("wild", wildcard)
        put("added", rotated)
        wait_for(lambda: _shown(port, "a.example.net") == fingerprint(wildcard[0]), 20, what="the added wildcard")
        wait_for(lambda: _shown(port, "shop.example.org") == fingerprint(rotated[0]), 20, what="the rotated pair")
        assert _shown(port, "a.b.example.net") == fingerprint(default[0])  # a wildcard is one label
        held.request("GET", "/again")  # opened before the rotation: still served, on its session
        assert held.getresponse().read() == b"legacy says hi"
        assert peer_fingerprint(held.sock) == fingerprint(shop[0])
        held.close()

        (certs / "broken.key").write_bytes(b"not a key")  # a pair that doesn't load harms no other
        (certs / "broken.crt").write_bytes(b"not a certificate")
        wait_for(lambda: f"{certs / 'broken.crt'} did not load" in (tmp_path / "https.log").read_text(), 20,
                 what="the broken pair logged")
        (certs / "wild.crt").unlink()
        (certs / "wild.key").unlink()
        wait_for(lambda: _shown(port, "a.example.net") == fingerprint(default[0]), 20, what="the removed pair")
        assert _shown(port, "shop.example.org") == fingerprint(rotated[0])

        for _ in range(2):  # a server name that isn't ASCII (RFC 6066: A-labels): refused in one line, once
            hostile = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                                      "-servername", b"\xc3\xbc.example.org"],
                                     input=b"", capture_output=True, timeout=30)
            assert b"alert internal error" in hostile.stderr
        log = (tmp_path / "https.log").read_text()
        assert log.count("refused a handshake whose server name (SNI) is not ASCII (said once)") == 1
        assert "Traceback" not in log and "Exception ignored" not in log
        assert _shown(port, "shop.example.org") == fingerprint(rotated[0]) and proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)



def test_the_router_serves_an_app_as_soon_as_its_push_reports_live(control_plane, tmp_path):
    """No lag between `git push` saying live and the router routing to the app (it used to
    answer 503 for the time its table file took to be written and polled)."""
    repo = stdlib_app(tmp_path / "prompt", "prompt one")
    control_plane.create(stdlib_manifest("prompt"))
    pushed = control_plane.push(repo, "prompt")
    assert "live" in pushed.stderr
    assert _get(control_plane.router_port, "prompt.localhost")[:3:2] == (200, "prompt one")


def test_no_app_claims_localhost_an_ip_or_another_apps_name(control_plane, tmp_path):
    """`hosts: [future.localhost]` used to be taken, and the app `future` made later was not
    served at its own name; localhost and IP addresses were claimed just as well."""
    cp = control_plane
    claims = "hosts: [squatter.example.test, future.localhost, localhost, 127.0.0.1]\n"
    refused = cp.api("POST", "/apps", data=stdlib_manifest("squatter") + claims, headers={"Content-Type": "application/yaml"})
    assert refused.status_code == 400
    assert refused.json()["details"] == [
        "hosts[1]: future.localhost is under localhost, which is every machine's own name; the app is served at squatter.localhost",
        "hosts[2]: localhost is under localhost, which is every machine's own name; the app is served at squatter.localhost",
        "hosts[3]: 127.0.0.1 is an IP address, not a host name: the router serves apps by host name",
    ]
    assert cp.api("GET", "/apps/squatter").status_code == 404
    cp.create(stdlib_manifest("squatter") + "hosts: [squatter.example.test, squatter.localhost]\n")
    repo = stdlib_app(tmp_path / "future", "future itself")
    cp.create(stdlib_manifest("future"))
    cp.push(repo, "future")
    assert _get(cp.router_port, "future.localhost")[::2] == (200, "future itself")
    for name in ("squatter", "future"):
        assert cp.api("DELETE", f"/apps/{name}").status_code == 200


def test_an_apps_own_name_is_routed_to_it_whoever_claimed_it_before():
    """An app stored before the rules of `hosts` may claim another's NAME.<domain>: the
    router's table gives the name to its app all the same."""
    from paas.appspec import AppSpec, Source
    from paas.routes import build

    def spec(name: str, port: int, *hosts: str) -> AppSpec:
        return AppSpec(name, port, Source("", "main", 10), None, None, {}, "/", 30, hosts=(f"{name}.localhost", *hosts),
                       credential="not used here")

    table = build([spec("early", 10001, "future.localhost", "early.example.test"), spec("future", 10002)], {},
                  "127.0.0.1", "localhost")
    assert table["hosts"] == {"early.localhost": "early", "future.localhost": "future", "early.example.test": "early"}


def test_paas_certs_add_serves_the_owners_certificate_for_its_own_name(secure_app, tmp_path):
    """`paas certs add` with a certificate a private CA signed for secure.example.test (outside
    the platform's domain): the router's TLS port serves it for that name — verified against the
    private CA — and the platform CA's for secure.localhost; a bad pair changes nothing; the
    key shows nowhere; `paas certs remove` takes it back."""
    cp, created = secure_app
    private_root = make_ca("Secure Private CA")
    leaf = make_leaf(private_root, ["secure.example.test"])
    (tmp_path / "secure.crt").write_text(leaf.cert_pem)
    (tmp_path / "secure.key").write_text(leaf.key_pem)
    (tmp_path / "stranger.key").write_text(key_pem(make_leaf(private_root, ["secure.example.test"]).key))
    private, platform = _trusting(private_root.cert_pem, tmp_path / "private"), _trusting(cp.cli("ca").stdout,
                                                                                          tmp_path / "platform")
    before = cp.cli("certs", "secure")
    assert before.returncode == 0, before.stderr
    assert before.stdout.splitlines()[-1] == ("not covered: secure.example.test "
                                              "(paas certs add secure --cert FILE --key FILE)")
    with pytest.raises(ssl.SSLCertVerificationError):
        _get(cp.router_tls_port, "secure.example.test", context=private)
    served_before = _shown(cp.router_tls_port, "secure.example.test")

    bad = cp.cli("certs", "add", "secure", "--cert", str(tmp_path / "secure.crt"),
                 "--key", str(tmp_path / "stranger.key"))
    assert (bad.returncode, bad.stdout, bad.stderr) == (
        1, "", "error: the key does not belong to the certificate (their public keys differ)\n")
    cp.after_passes(2)
    assert _shown(cp.router_tls_port, "secure.example.test") == served_before  # nothing changed

    added = cp.cli("certs", "add", "secure", "--cert", str(tmp_path / "secure.crt"), "--key", str(tmp_path / "secure.key"))
    assert added.returncode == 0, added.stderr
    assert added.stdout.splitlines()[0] == "secure: certificate added; its pod serves it within seconds"
    wait_for(lambda: _get(cp.router_tls_port, "secure.example.test", context=private)[::2] == (200, "secure one"),
             60, what="the added certificate served for secure.example.test")
    assert _get(cp.router_tls_port, "secure.localhost", context=platform)[::2] == (200, "secure one")
    assert _get(created["port"], "127.0.0.1", context=platform)[::2] == (200, "secure one")

    listed = json.loads(cp.cli("certs", "secure", "--json").stdout)
    by_source = {c["source"]: c for c in listed["certificates"]}
    assert by_source["added"]["fingerprint"] == _shown(cp.router_tls_port, "secure.example.test")
    assert by_source["added"]["issuer"] == "CN=Secure Private CA"
    assert by_source["platform CA"]["fingerprint"] == _shown(cp.router_tls_port, "secure.localhost")
    assert by_source["platform CA"]["names"] == ["secure.localhost", "127.0.0.1"]
    assert listed["uncovered"] == []
    table = cp.cli("certs", "secure").stdout
    assert table.splitlines()[1].split()[:3] == ["added", "secure.example.test", "CN=Secure"]

    # The key: a secret file of the pod (0400, its user's), and in no answer, listing or log.
    key_files = list((cp.data_dir / "pods").glob("secure/**/added.key"))
    assert key_files and all(f.stat().st_mode & 0o777 == 0o400 for f in key_files)
    body = [line for line in leaf.key_pem.splitlines() if not line.startswith("-----")]
    seen = [added.stdout, table, json.dumps(listed), cp.api("GET", "/apps/secure").text,
            cp.api("GET", "/apps/secure/certs").text, cp.cli("logs", "secure", "-n", "1000").stdout,
            cp.cli("status", "secure").stdout, cp.log.read_text()]
    assert not any(line in text for text in seen for line in body)
    assert not any("PRIVATE KEY" in text for text in seen)

    removed = cp.cli("certs", "remove", "secure")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines()[-1].startswith("not covered: secure.example.test")

    def refused() -> bool:
        try:
            _get(cp.router_tls_port, "secure.example.test", context=private)
        except ssl.SSLCertVerificationError:
            return True
        return False

    wait_for(refused, 60, what="the removed certificate no longer served")
    # The pod was replaced to take it out (as to put it in): serving again once it is healthy.
    wait_for(lambda: _get(cp.router_tls_port, "secure.localhost", context=platform)[::2] == (200, "secure one"),
             60, what="secure serving again")
