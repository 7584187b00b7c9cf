"""The certificate the sidecar serves: from files it watches for rotation, or made at start.

A rotated certificate is picked up without dropping a connection: each new connection is
wrapped with the context current when it arrives, and a connection keeps the session it
made. The files are checked every few seconds (and at once on SIGHUP); a pair that does
not load — a certificate written before its new key, say — leaves the last good one in
use until it does.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# TLS 1.2 only with forward-secret AEAD suites (TLS 1.3's are all of that kind).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context: TLS 1.2+, modern ciphers, HTTP/1.1 by ALPN."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate, as browsers and `openssl x509 -fingerprint` show it."""
    digest = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def self_signed(names: list[str], days: int = 365) -> tuple[bytes, bytes]:
    """A certificate (and its key, PEM) for ``names`` (host names and IP addresses), signed by itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@dataclass(frozen=True)
class _Stamp:
    cert: tuple[int, int, int]
    key: tuple[int, int, int]


def _stamp(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


class Certificates:
    """The current server context; :meth:`check` swaps in a rotated certificate."""

    def __init__(self, cert_file: str, key_file: str, log: Callable[[str], None]) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self._log = log
        self._lock = threading.RLock()  # SIGHUP may interrupt a check
        self._stamp = self._read_stamp()
        self._failed: _Stamp | None = None
        self.context = context(cert_file, key_file)  # raises: the sidecar can't start without one
        self.fingerprint = fingerprint(Path(cert_file).read_bytes())

    @classmethod
    def made_at_start(cls, log: Callable[[str], None]) -> Certificates:
        """A self-signed certificate for this host's names, kept in a private temporary directory."""
        names = list(dict.fromkeys(["localhost", socket.gethostname(), "127.0.0.1", "::1"]))
        cert, key = self_signed(names)
        where = Path(tempfile.mkdtemp(prefix="paas-https-"))
        (where / "cert.pem").write_bytes(cert)
        key_path = where / "key.pem"
        key_path.touch(0o600)
        key_path.write_bytes(key)
        made = cls(str(where / "cert.pem"), str(key_path), log)
        log(f"no CERT_FILE given: made a self-signed certificate for {', '.join(names)}; "
            f"SHA-256 fingerprint {made.fingerprint}")
        return made

    def _read_stamp(self) -> _Stamp | None:
        try:
            return _Stamp(_stamp(self.cert_file), _stamp(self.key_file))
        except OSError:
            return None

    def check(self) -> bool:
        """Load the files again if they changed; True when a new certificate is in use."""
        with self._lock:
            stamp = self._read_stamp()
            if stamp is None or stamp == self._stamp:
                return False
            try:
                ctx = context(self.cert_file, self.key_file)
                printed = fingerprint(Path(self.cert_file).read_bytes())
            except (OSError, ssl.SSLError, ValueError) as e:
                if stamp != self._failed:  # said once per change of the files
                    self._failed = stamp
                    self._log(f"the certificate in {self.cert_file} did not load ({e}); "
                              "still serving the previous one")
                return False
            self._stamp, self.context, self.fingerprint = stamp, ctx, printed
        self._log(f"loaded the rotated certificate, SHA-256 fingerprint {printed}")
        return True
