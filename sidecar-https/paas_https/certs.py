"""The certificates the sidecar serves: from files it watches for rotation, or made at start.

One pair (``CERT_FILE``/``KEY_FILE``) serves by default; a directory of more pairs
(``CERT_DIR``: ``NAME.crt`` with ``NAME.key``) serves each pair for the names it covers,
chosen by the name the client asks for (SNI) as the handshake begins — so one port serves a
platform's certificate for its own names and one a user brought for theirs.

A rotated certificate is picked up without dropping a connection: each new connection is
wrapped with the context current when it arrives, and a connection keeps the session it
made. The files are checked every few seconds (and at once on SIGHUP); a pair that does
not load — a certificate written before its new key, say — leaves the last good one in
use until it does. A pair taken out of the directory stops being served.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

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


def alt_names(names: list[str]) -> list[x509.GeneralName]:
    """Subject alternative names for host names and IP addresses."""
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    return sans


def self_signed(names: list[str], days: int = 365) -> tuple[bytes, bytes]:
    """A certificate (and its key, PEM) for ``names`` (host names and IP addresses), signed by itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    sans = alt_names(names)
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


def refuse_quietly_names_not_ascii(log: Callable[[str], None]) -> None:
    """A server name (SNI) that isn't ASCII (RFC 6066 wants A-labels) fails the handshake
    before the SNI callback runs, and Python prints that as an ignored exception with a
    traceback, once per such handshake: say it in one line, once, instead."""
    default, said = sys.unraisablehook, threading.Event()

    def hook(unraisable: Any) -> None:
        if not (isinstance(unraisable.exc_value, UnicodeDecodeError) and isinstance(unraisable.object, bytes)):
            default(unraisable)
        elif not said.is_set():
            said.set()
            log("refused a handshake whose server name (SNI) is not ASCII (said once)")

    sys.unraisablehook = hook


@dataclass(frozen=True)
class _Stamp:
    cert: tuple[int, int, int]
    key: tuple[int, int, int]


def _stamp(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def _read_stamp(cert_file: str, key_file: str) -> _Stamp | None:
    try:
        return _Stamp(_stamp(cert_file), _stamp(key_file))
    except OSError:
        return None


@dataclass(frozen=True)
class _Pair:
    stamp: _Stamp | None
    context: ssl.SSLContext
    names: tuple[str, ...]  # the DNS names it covers, lower-case (``*.`` wildcards kept as such)
    fingerprint: str


def _load(cert_file: str, key_file: str) -> _Pair:
    """Raises OSError (ssl.SSLError is one) or ValueError when the pair does not load."""
    stamp = _read_stamp(cert_file, key_file)
    ctx = context(cert_file, key_file)
    pem = Path(cert_file).read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(n.lower() for n in san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return _Pair(stamp, ctx, names, fingerprint(pem))


class Certificates:
    """The current server context, which picks a pair of ``cert_dir`` by SNI; :meth:`check`
    swaps in rotated, added and removed pairs."""

    def __init__(self, cert_file: str, key_file: str, log: Callable[[str], None], cert_dir: str = "") -> None:
        self.cert_file, self.key_file, self.cert_dir = cert_file, key_file, cert_dir
        self._log = log
        self._lock = threading.RLock()  # SIGHUP may interrupt a check
        self._default = self._serving(_load(cert_file, key_file))  # raises: the sidecar can't start without one
        self._extra: dict[str, _Pair] = {}  # cert file -> its pair, in the directory's order
        self._by_name: dict[str, ssl.SSLContext] = {}  # what SNI picks; swapped whole, read without the lock
        self._failed: dict[str, _Stamp | None] = {}
        self._seen: tuple[tuple[str, _Stamp | None], ...] = ()
        self.check()

    @property
    def context(self) -> ssl.SSLContext:
        return self._default.context

    @property
    def fingerprint(self) -> str:
        return self._default.fingerprint

    @classmethod
    def made_at_start(cls, log: Callable[[str], None], cert_dir: str = "") -> Certificates:
        """A self-signed certificate for this host's names, kept in a private temporary directory."""
        names = list(dict.fromkeys(["localhost", socket.gethostname(), "127.0.0.1", "::1"]))
        cert, key = self_signed(names)
        where = Path(tempfile.mkdtemp(prefix="paas-https-"))
        (where / "cert.pem").write_bytes(cert)
        key_path = where / "key.pem"
        key_path.touch(0o600)
        key_path.write_bytes(key)
        made = cls(str(where / "cert.pem"), str(key_path), log, cert_dir)
        log(f"no CERT_FILE given: made a self-signed certificate for {', '.join(names)}; "
            f"SHA-256 fingerprint {made.fingerprint}")
        return made

    def check(self) -> bool:
        """Load the files again if they changed; True when a new certificate is in use."""
        with self._lock:
            pairs = [(self.cert_file, self.key_file), *self._listed()]
            seen = tuple((cert, _read_stamp(cert, key)) for cert, key in pairs)
            if seen == self._seen:
                return False
            self._seen = seen
            new = False
            default = self._reloaded(self.cert_file, self.key_file, self._default) or self._default
            if default is not self._default:
                self._default, new = self._serving(default), True
                self._log(f"loaded the rotated certificate, SHA-256 fingerprint {default.fingerprint}")
            extra: dict[str, _Pair] = {}
            for cert, key in pairs[1:]:
                kept = self._extra.get(cert)
                pair = self._reloaded(cert, key, kept)
                if pair is not None:
                    extra[cert] = pair
                if pair is not kept and pair is not None:
                    new = True
                    self._log(f"serving {cert} for {', '.join(pair.names) or 'no DNS name'}, "
                              f"SHA-256 fingerprint {pair.fingerprint}")
            for cert in self._extra.keys() - extra.keys():
                self._log(f"no longer serving {cert}: it is gone")
            by_name: dict[str, ssl.SSLContext] = {}
            for pair in extra.values():
                for name in pair.names:
                    by_name.setdefault(name, pair.context)
            self._extra, self._by_name = extra, by_name
        return new

    def _listed(self) -> list[tuple[str, str]]:
        """The directory's pairs (``NAME.crt`` with ``NAME.key``) besides the default one."""
        if not self.cert_dir:
            return []
        try:
            entries = sorted(os.listdir(self.cert_dir))
        except OSError:
            return []
        default = os.path.realpath(self.cert_file)
        found = []
        for entry in entries:  # a Kubernetes secret volume's own entries start with "..": skipped
            cert = os.path.join(self.cert_dir, entry)
            if entry.endswith(".crt") and not entry.startswith(".") and os.path.realpath(cert) != default:
                found.append((cert, cert.removesuffix(".crt") + ".key"))
        return found

    def _reloaded(self, cert: str, key: str, kept: _Pair | None) -> _Pair | None:
        """The pair as its files are now: ``kept`` when they are unchanged or don't load."""
        stamp = _read_stamp(cert, key)
        if kept is not None and stamp == kept.stamp:
            return kept
        try:
            return _load(cert, key)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            if self._failed.get(cert, False) != stamp:  # said once per change of the files
                self._failed[cert] = stamp
                still = "still serving the previous one" if kept else "not serving it"
                self._log(f"the certificate in {cert} did not load ({e}); {still}")
            return kept

    def _serving(self, pair: _Pair) -> _Pair:
        """The default pair's context picks another pair's for a name that one covers."""
        pair.context.sni_callback = self._choose
        return pair

    def _choose(self, sock: ssl.SSLSocket | ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        if not server_name:
            return  # no SNI: the default pair
        name = server_name.lower().rstrip(".")
        by_name = self._by_name
        chosen = by_name.get(name) or by_name.get("*." + name.partition(".")[2])
        if chosen is not None:
            sock.context = chosen
