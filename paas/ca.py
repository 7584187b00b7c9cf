"""The platform's certificate authority: a local CA in the data directory that issues each
app a certificate for its host names inside the platform's domain (``APP.<domain>``, the
manifest's ``hosts`` under it, 127.0.0.1).

The CA is name-constrained (a critical NameConstraints extension, RFC 5280 4.2.1.10) to the
domain, ``localhost``, 127.0.0.0/8 and ::1: a client that trusts it accepts nothing it signs
for any other name, so trusting it (and its key, should it leak) puts no other site at risk.
Names outside (an app's ``hosts`` on a domain of its own) get the certificate its owner adds
(``paas certs add``). A CA kept from before — with no constraints, or constraints for another
domain — is replaced on start (:meth:`CertificateAuthority.ensure`), and with it every
certificate it issued.

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
import shutil
import threading
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = datetime.timedelta(days=3650)
# What the CA may vouch for besides the platform's domain: loopback, where apps also answer.
LOOPBACK_NAME = "localhost"
LOOPBACK_NETWORKS = (ip_network("127.0.0.0/8"), ip_network("::1/128"))
LIFETIME = datetime.timedelta(days=90)
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class KeyPair:
    certificate: str = ""  # PEM: the certificate, then the CA's
    key: str = ""  # PEM, unencrypted (delivered as a secret file)


class Issuer(Protocol):
    def vouches_for(self, name: str) -> bool:
        """Whether a certificate it issues may name ``name``."""

    def issue(self, names: tuple[str, ...]) -> KeyPair:
        """A certificate for ``names`` (each one it vouches for)."""


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


def _constraints(cert: x509.Certificate) -> x509.NameConstraints | None:
    """The certificate's NameConstraints, if it has them and marks them critical."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        return None
    return ext.value if ext.critical else None


def _shown(subtrees: list[x509.GeneralName]) -> str:
    return ", ".join(str(t.value) for t in subtrees)


class CertificateAuthority:
    """A CA kept in ``directory`` (made on first use): ``ca.pem``, ``ca.key``, ``issued/``;
    it vouches for ``domain`` (and every name under it), ``localhost`` and loopback."""

    def __init__(self, directory: Path, label: str = "", domain: str = LOOPBACK_NAME) -> None:
        self.directory = directory
        self.label = label
        self.domains = tuple(dict.fromkeys([domain.lower().rstrip("."), LOOPBACK_NAME]))
        self._lock = threading.Lock()
        self._issued: dict[tuple[str, ...], tuple[KeyPair, datetime.datetime]] = {}
        self._ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None
        self._replaced = ""  # why the kept CA was replaced on loading, until ensure() tells

    @property
    def name_constraints(self) -> x509.NameConstraints:
        permitted: list[x509.GeneralName] = [x509.DNSName(d) for d in self.domains]
        permitted += [x509.IPAddress(net) for net in LOOPBACK_NETWORKS]
        return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None)

    def vouches_for(self, name: str) -> bool:
        """Whether ``name`` is inside the constraints: the domain or a name under it,
        localhost or a name under it, or a loopback address."""
        try:
            address = ip_address(name)
        except ValueError:
            name = name.lower().rstrip(".")
            return any(name == d or name.endswith("." + d) for d in self.domains)
        return any(address in net for net in LOOPBACK_NETWORKS)

    def ensure(self) -> str:
        """Load the CA (made on first use); why the kept one was replaced, as a sentence for
        users, or ``""`` when it wasn't."""
        with self._lock:
            self._load()
            why, self._replaced = self._replaced, ""
        if not why:
            return ""
        return (f"the platform CA was replaced: {why}; the new one vouches only for "
                f"{_shown(self.name_constraints.permitted_subtrees or [])}, and every app's certificate "
                "is issued again from it: trust it again (paas ca > paas-ca.pem) and remove the old one")

    def certificate(self) -> str:
        """The CA's certificate (PEM): what users add to their trust store."""
        with self._lock:
            cert, _ = self._load()
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, names: tuple[str, ...]) -> KeyPair:
        """A certificate for ``names`` with more than RENEW_BEFORE left: the kept one, else a new one."""
        names = tuple(dict.fromkeys(names))
        outside = [n for n in names if not self.vouches_for(n)]
        if outside:  # a caller's mistake: clients would refuse such a certificate anyway
            raise ValueError(f"the platform CA does not vouch for {', '.join(outside)}")
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
        """The kept certificate for ``names``, if this CA signed it."""
        stem = self._stem(names)
        try:
            pem, key = stem.with_suffix(".pem").read_text(), stem.with_suffix(".key").read_text()
            cert = x509.load_pem_x509_certificate(pem.encode())
            cert.verify_directly_issued_by(self._load()[0])
        except (OSError, ValueError, TypeError, InvalidSignature):
            return None
        return KeyPair(pem, key), cert.not_valid_after_utc

    def _unfit(self) -> str:
        """Why the kept CA can't serve (``""``: it can, or there is none yet)."""
        try:
            kept = x509.load_pem_x509_certificate((self.directory / "ca.pem").read_bytes())
        except FileNotFoundError:
            return ""
        except (OSError, ValueError):
            return "its certificate in ca.pem did not load"
        constraints = _constraints(kept)
        if constraints is None:
            # Every CA made before name constraints were: its key was readable by apps then.
            return ("it had no name constraints, so it could vouch for any site, and its key was readable "
                    "by apps before this release")
        wanted = self.name_constraints
        if constraints.excluded_subtrees or set(constraints.permitted_subtrees or []) != set(
                wanted.permitted_subtrees or []):
            return (f"it vouched for {_shown(constraints.permitted_subtrees or []) or 'nothing'}, "
                    f"not for {', '.join(self.domains)}")
        return ""

    def _load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """The CA; one kept that isn't constrained to exactly this platform's names is
        deleted first — its key, its certificate and what it issued — and a new one made."""
        if self._ca is not None:
            return self._ca
        cert_path, key_path = self.directory / "ca.pem", self.directory / "ca.key"
        why = self._unfit()
        if why:
            shutil.rmtree(self.directory / "issued", ignore_errors=True)
            key_path.unlink(missing_ok=True)
            cert_path.unlink(missing_ok=True)
            self._issued.clear()
            self._replaced = why
        if not cert_path.exists():
            self._create(cert_path, key_path)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self._ca = (cert, key)
        return self._ca

    def _create(self, cert_path: Path, key_path: Path) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.chmod(0o700)
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
            .add_extension(self.name_constraints, critical=True)
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
