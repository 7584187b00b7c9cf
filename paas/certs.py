"""Certificates an app's owner adds for its names outside the platform's domain (`paas certs
add`, Dokku's ``certs:add``): checked before they are stored, so a pair the https sidecar
couldn't serve — or that clients would refuse — never replaces a pod's working one.

Each problem is one sentence; the key is normalised (unencrypted PKCS#8 PEM) and the chain
kept as its certificates alone (a stray key pasted into the certificate file is dropped).
What is shown of a certificate is public: its names, issuer, expiry and fingerprint.
"""

from __future__ import annotations

import datetime
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from paas.ca import KeyPair
from paas.errors import InvalidInput

MAX_PEM = 64 * 1024  # a chain of a few certificates is a few KB
MAX_CHAIN = 8
MIN_RSA_BITS = 2048


def check(chain_pem: str, key_pem: str, app: str, hosts: tuple[str, ...],
          now: datetime.datetime | None = None) -> KeyPair:
    """The pair, normalised, once it is fit to serve ``app`` at one of ``hosts`` at least;
    else InvalidInput saying what is wrong with it."""
    now = now or datetime.datetime.now(datetime.UTC)
    chain = _chain(chain_pem)
    key = _key(key_pem)
    leaf = chain[0]
    if _public(leaf.public_key()) != _public(key.public_key()):
        raise InvalidInput("the key does not belong to the certificate (their public keys differ)")
    if _is_ca(leaf):
        raise InvalidInput(f"the first certificate ({_subject(leaf)}) is a CA's: give the server's "
                           "certificate first, then each issuer in turn")
    for number, cert in enumerate(chain, 1):
        what = "the certificate" if number == 1 else f"certificate {number} of the chain ({_subject(cert)})"
        if cert.not_valid_after_utc <= now:
            raise InvalidInput(f"{what} expired on {_when(cert.not_valid_after_utc)}")
        if cert.not_valid_before_utc > now:
            raise InvalidInput(f"{what} is not valid before {_when(cert.not_valid_before_utc)}")
    for number, (cert, issuer) in enumerate(zip(chain, chain[1:], strict=False), 1):
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            raise InvalidInput(
                f"the chain is out of order: certificate {number + 1} ({_subject(issuer)}) did not issue "
                f"certificate {number} ({_subject(cert)}); give the server's certificate first, then each "
                "issuer in turn") from None
    names = dns_names(leaf)
    if not names:
        raise InvalidInput("the certificate names no host: it has no subjectAltName DNS names "
                           "(clients ignore the common name)")
    if not any(covers(names, host) for host in hosts):
        raise InvalidInput(f"the certificate is for {', '.join(names)}, none of which {app} is served at "
                           f"({', '.join(hosts)}): add the name to its manifest's hosts first")
    pair = KeyPair(
        "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()).decode(),
    )
    _loads_in_tls(pair)
    return pair


def describe(chain_pem: str, source: str, hosts: tuple[str, ...]) -> dict:
    """What `paas certs` shows of a certificate: nothing of its key."""
    leaf = x509.load_pem_x509_certificates(chain_pem.encode())[0]
    names, san = dns_names(leaf), _san(leaf)
    addresses = [str(a) for a in san.get_values_for_type(x509.IPAddress)] if san else []
    return {
        "source": source,
        "names": [*names, *addresses],
        "issuer": leaf.issuer.rfc4514_string(),
        "not_after": leaf.not_valid_after_utc.isoformat(),
        "fingerprint": ":".join(f"{b:02X}" for b in leaf.fingerprint(hashes.SHA256())),
        "serves": [host for host in hosts if covers(names, host)],
    }


def dns_names(cert: x509.Certificate) -> list[str]:
    san = _san(cert)
    return [n.lower() for n in san.get_values_for_type(x509.DNSName)] if san else []


def covers(names: list[str], host: str) -> bool:
    """Whether a certificate for ``names`` is valid for ``host`` (a ``*.`` wildcard stands
    for one whole label, as RFC 6125 has it)."""
    host = host.lower().rstrip(".")
    parent = host.partition(".")[2]
    return any(name == host or (name.startswith("*.") and parent and name[2:] == parent) for name in names)


# -- the checks' parts -------------------------------------------------------------------


def _chain(text: str) -> list[x509.Certificate]:
    if len(text) > MAX_PEM:
        raise InvalidInput(f"the certificate chain is over {MAX_PEM // 1024} KB: give the server's certificate "
                           "and its issuers only")
    if "-----BEGIN CERTIFICATE-----" not in text:
        held = " (it holds a private key: that goes in the key)" if "PRIVATE KEY-----" in text else ""
        raise InvalidInput(f"the certificate is not PEM: it has no -----BEGIN CERTIFICATE----- block{held}")
    try:
        chain = x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        raise InvalidInput("the certificate's PEM did not parse as X.509 certificates") from None
    if len(chain) > MAX_CHAIN:
        raise InvalidInput(f"the chain has {len(chain)} certificates, more than {MAX_CHAIN}: give the server's "
                           "certificate and its intermediates only")
    for number, cert in enumerate(chain, 1):
        try:  # both are parsed lazily: a malformed one fails here, not halfway through the checks
            cert.extensions  # noqa: B018
            cert.public_key()
        except (ValueError, UnsupportedAlgorithm):
            raise InvalidInput(f"certificate {number} of the chain has extensions or a public key that "
                               "did not parse") from None
    return chain


def _key(text: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    if len(text) > MAX_PEM or "PRIVATE KEY-----" not in text:
        raise InvalidInput("the key is not a PEM private key (-----BEGIN PRIVATE KEY-----)")
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except TypeError:
        raise InvalidInput("the key is encrypted: give it without a passphrase "
                           "(openssl pkey -in KEY -out PLAIN-KEY)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidInput("the key's PEM did not parse as a private key") from None
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        raise InvalidInput(f"the key is RSA of {key.key_size} bits: clients refuse less than {MIN_RSA_BITS}")
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise InvalidInput(f"the key is {type(key).__name__.removesuffix('PrivateKey')}: "
                           "give an ECDSA, RSA or Ed25519 key")
    return key


def _loads_in_tls(pair: KeyPair) -> None:
    """The last word is OpenSSL's, as the sidecar will load it (a weak signature, say)."""
    with tempfile.TemporaryDirectory(prefix="paas-cert-") as where:  # 0700: the key stays ours
        cert_file, key_file = Path(where, "tls.crt"), Path(where, "tls.key")
        cert_file.write_text(pair.certificate)
        key_file.touch(0o600)
        key_file.write_text(pair.key)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)
        except ssl.SSLError as e:
            raise InvalidInput(f"the certificate can't be served: OpenSSL refuses it ({e.reason or e})") from None


def _public(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "no subject"


def _when(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
