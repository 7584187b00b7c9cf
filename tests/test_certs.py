"""The platform CA vouches for the platform's names only (name-constrained to PAAS_DOMAIN,
localhost and loopback), a CA kept from before is replaced, and an app's names outside the
domain get the certificate its owner adds (`PUT /apps/NAME/certs`, `paas certs add`):
checked first, each problem one sentence, its key shown nowhere.

Real X.509 and real TLS: `openssl verify` and Python's ssl judge what the CA signs; the
replacement is seen through a real `paas up` started on an old data directory. Serving an
added certificate by SNI (through the router and the sidecar) is in tests/test_https.py."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from ipaddress import ip_network
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from helpers import ControlPlane, peer_fingerprint, stdlib_app, stdlib_manifest, wait_for
from paas.ca import CertificateAuthority
from paas.store import Store
from tls_harness import DAY, NOW, Issued, key_pem, make_ca, make_leaf, platform_ca_of, write_unconstrained_ca

# -- the CA's name constraints ------------------------------------------------------------


def test_the_platform_ca_is_name_constrained_to_the_domain_and_loopback(tmp_path):
    ca = CertificateAuthority(tmp_path / "ca", "test", domain="example.com")
    cert = x509.load_pem_x509_certificate(ca.certificate().encode())
    constraints = cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert set(constraints.value.permitted_subtrees or []) == {
        x509.DNSName("example.com"), x509.DNSName("localhost"),
        x509.IPAddress(ip_network("127.0.0.0/8")), x509.IPAddress(ip_network("::1/128")),
    }
    assert constraints.value.excluded_subtrees is None
    with pytest.raises(ValueError, match="does not vouch for evil.example.org"):
        ca.issue(("shop.example.com", "evil.example.org"))


def _openssl_verify(ca_file: Path, leaf: Issued, tmp: Path) -> subprocess.CompletedProcess:
    (tmp / "leaf.pem").write_text(leaf.cert_pem)
    return subprocess.run(["openssl", "verify", "-CAfile", str(ca_file), str(tmp / "leaf.pem")],
                          capture_output=True, text=True, timeout=30)


def _handshake(served: Issued, server_name: str, ca_file: Path, tmp: Path) -> str:
    """A real TLS handshake on loopback: a server showing ``served``, a client trusting only
    ``ca_file`` and asking for ``server_name``; the fingerprint the client accepted."""
    (tmp / "served.crt").write_text(served.cert_pem)
    (tmp / "served.key").write_text(served.key_pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp / "served.crt", tmp / "served.key")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):  # the client refused the certificate
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        client = ssl.create_default_context(cafile=str(ca_file))
        with socket.create_connection(listener.getsockname(), timeout=10) as raw, \
                client.wrap_socket(raw, server_hostname=server_name) as tls:
            return peer_fingerprint(tls)
    finally:
        thread.join(10)
        listener.close()


def test_what_its_key_signs_for_another_site_is_refused_by_openssl_and_python(tmp_path):
    """The CA's key leaked (apps could read it before this release): a certificate for
    evil.example.org it signs is still refused by every client that trusts the CA."""
    CertificateAuthority(tmp_path / "ca", "test").certificate()
    ca_file = tmp_path / "ca" / "ca.pem"
    stolen = platform_ca_of(tmp_path / "ca")
    evil, own = make_leaf(stolen, ["evil.example.org"]), make_leaf(stolen, ["shop.localhost", "127.0.0.1"])

    assert _openssl_verify(ca_file, own, tmp_path).returncode == 0
    refused = _openssl_verify(ca_file, evil, tmp_path)
    assert refused.returncode != 0 and "permitted subtree violation" in refused.stdout + refused.stderr

    assert _handshake(own, "shop.localhost", ca_file, tmp_path)  # the same client trusts the CA's own
    with pytest.raises(ssl.SSLCertVerificationError) as e:
        _handshake(evil, "evil.example.org", ca_file, tmp_path)
    assert e.value.verify_message == "permitted subtree violation"


def test_a_kept_ca_without_constraints_or_for_another_domain_is_replaced(tmp_path):
    ca_dir = tmp_path / "ca"
    old = write_unconstrained_ca(ca_dir)
    first = CertificateAuthority(ca_dir, "test")
    why = first.ensure()
    assert why == ("the platform CA was replaced: it had no name constraints, so it could vouch for any site, "
                   "and its key was readable by apps before this release; the new one vouches only for "
                   "localhost, 127.0.0.0/8, ::1/128, and every app's certificate is issued again from it: "
                   "trust it again (paas ca > paas-ca.pem) and remove the old one")
    assert old.key_pem not in (ca_dir / "ca.key").read_text()
    assert first.certificate() != old.cert_pem
    issued = first.issue(("shop.localhost", "127.0.0.1"))
    assert CertificateAuthority(ca_dir, "test").ensure() == ""  # constrained as wanted: kept
    assert CertificateAuthority(ca_dir, "test").issue(("shop.localhost", "127.0.0.1")) == issued

    moved = CertificateAuthority(ca_dir, "test", domain="example.com")  # PAAS_DOMAIN changed
    assert moved.ensure().startswith("the platform CA was replaced: it vouched for localhost, 127.0.0.0/8, "
                                     "::1/128, not for example.com, localhost; the new one vouches only for "
                                     "example.com, localhost, 127.0.0.0/8, ::1/128, ")
    reissued = moved.issue(("shop.localhost", "127.0.0.1"))
    assert reissued != issued  # what the replaced CA issued is gone with it
    x509.load_pem_x509_certificate(reissued.certificate.encode()).verify_directly_issued_by(
        x509.load_pem_x509_certificate(moved.certificate().encode()))


# -- `PUT /apps/NAME/certs`: checked, stored, listed (in-process, no pods) --------------------

SHOP = "name: shop\nruntime: python\nsidecars: [https]\nhosts: [shop.example.org, www.shop.localhost]\n"


@pytest.fixture(scope="module")
def private_ca() -> tuple[Issued, Issued]:
    """A CA of the shop's own and its intermediate (what a public CA's chain looks like)."""
    root = make_ca("Shop Root CA")
    return root, make_ca("Shop Intermediate", issuer=root)


@pytest.fixture
def shop(client, auth):
    created = client.post("/api/v1/apps", data=SHOP, headers=auth | {"Content-Type": "application/yaml"})
    assert created.status_code == 201, created.get_json()
    return client


def _fingerprint(cert: x509.Certificate) -> str:
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def _key_body(pem: str) -> list[str]:
    """The base64 lines of a PEM key: what must show nowhere."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def test_an_added_certificate_is_checked_stored_and_listed_without_its_key(shop, auth, private_ca, app):
    root, intermediate = private_ca
    before = shop.get("/api/v1/apps/shop/certs", headers=auth).get_json()
    assert [c["source"] for c in before["certificates"]] == ["platform CA"]
    assert before["certificates"][0]["names"] == ["shop.localhost", "www.shop.localhost", "127.0.0.1"]
    assert before["uncovered"] == ["shop.example.org"]  # the platform CA may not vouch for it

    leaf = make_leaf(intermediate, ["shop.example.org"])
    added = shop.put("/api/v1/apps/shop/certs", headers=auth,
                     json={"certificate": leaf.cert_pem + intermediate.cert_pem, "key": leaf.key_pem})
    assert added.status_code == 200, added.get_json()
    listed = shop.get("/api/v1/apps/shop/certs", headers=auth)
    assert listed.get_json() == added.get_json()
    mine = listed.get_json()["certificates"][0]
    assert mine == {"source": "added", "names": ["shop.example.org"], "issuer": "CN=Shop Intermediate",
                    "not_after": leaf.cert.not_valid_after_utc.isoformat(), "fingerprint": _fingerprint(leaf.cert),
                    "serves": ["shop.example.org"]}
    assert listed.get_json()["uncovered"] == []
    # Kept as a secret: the chain as given, the key normalised; in no answer of the API.
    stored = Store.in_data_dir(app.config["PAAS_SETTINGS"].data_dir)
    try:
        pair = stored.certificate("shop")
    finally:
        stored.close()
    assert pair is not None and pair.certificate == leaf.cert_pem + intermediate.cert_pem
    assert pair.key == leaf.key_pem
    described = shop.get("/api/v1/apps/shop", headers=auth)
    assert "certificate added for shop.example.org" in described.get_data(as_text=True)
    for answer in (added, listed, described, shop.get("/api/v1/apps", headers=auth)):
        text = answer.get_data(as_text=True)
        assert "PRIVATE KEY" not in text and not any(line in text for line in _key_body(leaf.key_pem))

    # Gone with `DELETE …/certs`, and with the app.
    removed = shop.delete("/api/v1/apps/shop/certs", headers=auth)
    assert removed.status_code == 200 and removed.get_json()["uncovered"] == ["shop.example.org"]
    again = shop.delete("/api/v1/apps/shop/certs", headers=auth)
    assert (again.status_code, again.get_json()["error"]) == (404, "shop has no added certificate to remove")
    assert shop.put("/api/v1/apps/shop/certs", headers=auth,
                    json={"certificate": leaf.cert_pem, "key": leaf.key_pem}).status_code == 200
    assert shop.delete("/api/v1/apps/shop", headers=auth).status_code == 200
    assert shop.post("/api/v1/apps", data=SHOP, headers=auth | {"Content-Type": "application/yaml"}).status_code == 201
    assert [c["source"] for c in shop.get("/api/v1/apps/shop/certs", headers=auth).get_json()["certificates"]] == [
        "platform CA"]


def _bad_pairs(root: Issued, intermediate: Issued) -> list[tuple[str, dict | str, str]]:
    """(what, body, the one sentence it is answered with)."""
    good = make_leaf(intermediate, ["shop.example.org"])
    chain = good.cert_pem + intermediate.cert_pem
    expired = make_leaf(intermediate, ["shop.example.org"], NOW - 30 * DAY, NOW - DAY)
    early = make_leaf(intermediate, ["shop.example.org"], NOW + DAY, NOW + 30 * DAY)
    other = make_leaf(intermediate, ["other.example.net"])
    weak = make_leaf(intermediate, ["shop.example.org"], key=rsa.generate_private_key(65537, 1024))
    stranger = key_pem(ec.generate_private_key(ec.SECP256R1()))
    served = "(shop.localhost, shop.example.org, www.shop.localhost)"
    when = expired.cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
    starts = early.cert.not_valid_before_utc.strftime("%Y-%m-%d %H:%M UTC")
    return [
        ("garbage", {"certificate": "not a certificate", "key": good.key_pem},
         "the certificate is not PEM: it has no -----BEGIN CERTIFICATE----- block"),
        ("swapped", {"certificate": good.key_pem, "key": chain},
         "the certificate is not PEM: it has no -----BEGIN CERTIFICATE----- block "
         "(it holds a private key: that goes in the key)"),
        ("broken PEM", {"certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                        "key": good.key_pem},
         "the certificate's PEM did not parse as X.509 certificates"),
        ("mismatched key", {"certificate": chain, "key": stranger},
         "the key does not belong to the certificate (their public keys differ)"),
        ("garbage key", {"certificate": chain, "key": "hunter2"},
         "the key is not a PEM private key (-----BEGIN PRIVATE KEY-----)"),
        ("encrypted key", {"certificate": chain, "key": key_pem(good.key, b"secret")},
         "the key is encrypted: give it without a passphrase (openssl pkey -in KEY -out PLAIN-KEY)"),
        ("weak key", {"certificate": weak.cert_pem + intermediate.cert_pem, "key": weak.key_pem},
         "the key is RSA of 1024 bits: clients refuse less than 2048"),
        ("expired", {"certificate": expired.cert_pem + intermediate.cert_pem, "key": expired.key_pem},
         f"the certificate expired on {when}"),
        ("not yet valid", {"certificate": early.cert_pem + intermediate.cert_pem, "key": early.key_pem},
         f"the certificate is not valid before {starts}"),
        ("out of order", {"certificate": good.cert_pem + root.cert_pem + intermediate.cert_pem, "key": good.key_pem},
         "the chain is out of order: certificate 2 (CN=Shop Root CA) did not issue certificate 1 "
         "(CN=shop.example.org); give the server's certificate first, then each issuer in turn"),
        ("a CA first", {"certificate": intermediate.cert_pem + good.cert_pem, "key": intermediate.key_pem},
         "the first certificate (CN=Shop Intermediate) is a CA's: give the server's certificate first, "
         "then each issuer in turn"),
        ("another app's name", {"certificate": other.cert_pem + intermediate.cert_pem, "key": other.key_pem},
         f"the certificate is for other.example.net, none of which shop is served at {served}: "
         "add the name to its manifest's hosts first"),
        ("not JSON", "certificate=x", 'send JSON {"certificate": "PEM chain", "key": "PEM private key"}'),
        ("no key", {"certificate": chain}, 'send JSON {"certificate": "PEM chain", "key": "PEM private key"}'),
    ]


def test_each_bad_pair_is_one_sentence_and_changes_nothing(shop, auth, private_ca):
    root, intermediate = private_ca
    kept = make_leaf(intermediate, ["shop.example.org"])
    assert shop.put("/api/v1/apps/shop/certs", headers=auth,
                    json={"certificate": kept.cert_pem, "key": kept.key_pem}).status_code == 200
    before = shop.get("/api/v1/apps/shop/certs", headers=auth).get_json()
    for what, body, sentence in _bad_pairs(root, intermediate):
        sent = {"json": body} if isinstance(body, dict) else {"data": body}
        answer = shop.put("/api/v1/apps/shop/certs", headers=auth, **sent)
        assert (answer.status_code, answer.get_json()["error"]) == (400, sentence), what
        assert "\n" not in sentence, what
        sent_keys = [line for v in (body.values() if isinstance(body, dict) else ()) for line in _key_body(v)]
        assert not any(line in answer.get_data(as_text=True) for line in sent_keys), what
        assert shop.get("/api/v1/apps/shop/certs", headers=auth).get_json() == before, what
    nobody = shop.put("/api/v1/apps/nobody/certs", headers=auth,
                      json={"certificate": kept.cert_pem, "key": kept.key_pem})
    assert (nobody.status_code, nobody.get_json()["error"]) == (404, "app 'nobody' not found")
    assert shop.get("/api/v1/apps/shop/certs", headers=auth).get_json() == before


# -- `paas up` on a data directory whose CA predates name constraints -----------------------


def test_paas_up_replaces_an_unconstrained_ca_says_so_and_reissues_every_certificate(tmp_path, deps_cache):
    cp = ControlPlane(tmp_path / "data", tmp_path / "cli-config", cache=deps_cache)
    cp.start()
    try:
        created = cp.create(stdlib_manifest("keep") + "sidecars: [https]\n")
        cp.push(stdlib_app(tmp_path / "keep", "kept"), "keep")
    finally:
        assert cp.stop() == 0
    old = write_unconstrained_ca(cp.data_dir / "ca")  # as a data directory of the last release holds it
    (tmp_path / "old-ca.pem").write_text(old.cert_pem)
    cp.start()
    try:
        new_pem = cp.cli("ca").stdout
        (tmp_path / "new-ca.pem").write_text(new_pem)
        new = x509.load_pem_x509_certificate(new_pem.encode())
        assert new.extensions.get_extension_for_class(x509.NameConstraints).critical
        assert old.key_pem not in (cp.data_dir / "ca" / "ca.key").read_text()

        said = [line for line in cp.log.read_text().splitlines() if "platform CA was replaced" in line]
        assert said == ["warning: the platform CA was replaced: it had no name constraints, so it could vouch for "
                        "any site, and its key was readable by apps before this release; the new one vouches only "
                        "for localhost, 127.0.0.0/8, ::1/128, and every app's certificate is issued again from it: "
                        "trust it again (paas ca > paas-ca.pem) and remove the old one"]
        events = cp.api("GET", "/apps/keep").json()["events"]
        assert [e["message"] for e in events if e["kind"] == "certificate"] == [said[0].removeprefix("warning: ")]

        def served(ca_file: Path) -> str:
            trusting = ssl.create_default_context(cafile=str(ca_file))
            with socket.create_connection(("127.0.0.1", created["port"]), timeout=5) as raw, \
                    trusting.wrap_socket(raw, server_hostname="keep.localhost") as tls:
                return peer_fingerprint(tls)

        wait_for(lambda: served(tmp_path / "new-ca.pem"), 60, what="keep's certificate issued by the new CA")
        with pytest.raises(ssl.SSLCertVerificationError):
            served(tmp_path / "old-ca.pem")
    finally:
        assert cp.stop() == 0
    cp.start()  # the new CA is kept: said once, not on every start
    try:
        assert cp.cli("ca").stdout == new_pem
        assert sum("platform CA was replaced" in line for line in cp.log.read_text().splitlines()) == 1
    finally:
        assert cp.stop() == 0
