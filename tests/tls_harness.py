"""Certificates made in tests: a private CA of a test's own (the kind a company runs, or what
stands in for a public CA here), leaves it signs, and a platform CA as releases before name
constraints made it. Real X.509, real keys; nothing is mocked."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from paas_https.certs import alt_names

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self) -> str:
        return key_pem(self.key)


def key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, password: bytes | None = None) -> str:
    crypt = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, crypt).decode()


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca(common: str, issuer: Issued | None = None, constraints: x509.NameConstraints | None = None) -> Issued:
    """A CA certificate: self-signed, or an intermediate signed by ``issuer``."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(issuer.cert.subject if issuer else _name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
    )
    if constraints is not None:
        builder = builder.add_extension(constraints, critical=True)
    return Issued(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def make_leaf(issuer: Issued, names: list[str], not_before: datetime.datetime = NOW - DAY,
              not_after: datetime.datetime = NOW + 90 * DAY,
              key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None) -> Issued:
    """A server certificate for ``names`` (host names and IP addresses) signed by ``issuer``."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    sans = alt_names(names)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(issuer.key, hashes.SHA256())
    )
    return Issued(cert, key)


def platform_ca_of(ca_dir: Path) -> Issued:
    """The platform CA a data directory holds: its certificate and (the attacker's prize) its key."""
    cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return Issued(cert, key)


def write_unconstrained_ca(ca_dir: Path) -> Issued:
    """A platform CA as releases before name constraints made it (no NameConstraints; a key
    apps could read), written where the control plane keeps its CA."""
    old = make_ca("paas local CA old")
    ca_dir.mkdir(parents=True, exist_ok=True)
    (ca_dir / "ca.pem").write_text(old.cert_pem)
    (ca_dir / "ca.key").write_text(old.key_pem)
    return old
