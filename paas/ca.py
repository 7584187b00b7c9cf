"""The platform's certificate authority: a local CA in the data directory that issues each
app a certificate for its host names (``APP.<domain>``, the manifest's ``hosts``, 127.0.0.1).

Users trust it once (``paas ca`` prints it); apps' certificates are issued for
``LIFETIME`` and issued again once less than ``RENEW_BEFORE`` is left, so a pod's
certificate is renewed long before it expires. Issued certificates are kept (by the set of
names they cover), so a control plane restart serves the same ones.

The seam for a public CA is :class:`Issuer`: ``issue(names)`` returns a certificate chain
and key. An ACME issuer (Let's Encrypt) would answer its http-01 challenges on the
router's plain-HTTP port (``/.well-known/acme-challenge/``) and return what the ACME
server signed; it can't be reached from this machine, so only the local CA is built.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import threading
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = datetime.timedelta(days=3650)
LIFETIME = datetime.timedelta(days=90)
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class KeyPair:
    certificate: str = ""  # PEM: the certificate, then the CA's
    key: str = ""  # PEM, unencrypted (delivered as a secret file)


class Issuer(Protocol):
    def issue(self, names: tuple[str, ...]) -> KeyPair: ...


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically, readable by the owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class CertificateAuthority:
    """A CA kept in ``directory`` (made on first use): ``ca.pem``, ``ca.key``, ``issued/``."""

    def __init__(self, directory: Path, label: str = "") -> None:
        self.directory = directory
        self.label = label
        self._lock = threading.Lock()
        self._issued: dict[tuple[str, ...], tuple[KeyPair, datetime.datetime]] = {}
        self._ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None

    def certificate(self) -> str:
        """The CA's certificate (PEM): what users add to their trust store."""
        with self._lock:
            cert, _ = self._load()
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, names: tuple[str, ...]) -> KeyPair:
        """A certificate for ``names`` with more than RENEW_BEFORE left: the kept one, else a new one."""
        names = tuple(dict.fromkeys(names))
        with self._lock:
            kept = self._issued.get(names) or self._read_issued(names)
            if kept is not None and kept[1] - _now() > RENEW_BEFORE:
                self._issued[names] = kept
                return kept[0]
            pair, expires = self._sign(names)
            stem = self._stem(names)
            _write_private(stem.with_suffix(".key"), pair.key.encode())
            _write_private(stem.with_suffix(".pem"), pair.certificate.encode())
            self._issued[names] = (pair, expires)
            return pair

    # -- inside ------------------------------------------------------------------

    def _stem(self, names: tuple[str, ...]) -> Path:
        issued = self.directory / "issued"
        issued.mkdir(parents=True, exist_ok=True, mode=0o700)
        return issued / hashlib.sha256("\n".join(names).encode()).hexdigest()[:24]

    def _read_issued(self, names: tuple[str, ...]) -> tuple[KeyPair, datetime.datetime] | None:
        stem = self._stem(names)
        try:
            pem, key = stem.with_suffix(".pem").read_text(), stem.with_suffix(".key").read_text()
            expires = x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc
        except (OSError, ValueError):
            return None
        return KeyPair(pem, key), expires

    def _load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if self._ca is not None:
            return self._ca
        cert_path, key_path = self.directory / "ca.pem", self.directory / "ca.key"
        if not cert_path.exists():
            self._create(cert_path, key_path)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self._ca = (cert, key)
        return self._ca

    def _create(self, cert_path: Path, key_path: Path) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "paas"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"paas local CA {self.label}".strip()),
        ])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, _pem_key(key))
        _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))

    def _sign(self, names: tuple[str, ...]) -> tuple[KeyPair, datetime.datetime]:
        ca_cert, ca_key = self._load()
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        expires = now + LIFETIME
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(expires)
            .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
        return KeyPair(chain.decode(), _pem_key(key).decode()), expires
