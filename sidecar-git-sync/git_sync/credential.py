"""The pod's credential, our extension to git-sync's contract: a secret only the platform and
the pod hold, in a file named by `PAAS_SYNC_TOKEN_FILE` (a variable upstream's git-sync
ignores, so a pod can still run upstream's image). With one, `POST /sync` (and
`/debug/pprof/`) answer only requests that carry it as ``Authorization: Bearer <secret>``;
the readiness route and `/metrics` stay open, as upstream's, for probes and scrapers (they
tell only whether and how often it synced). Without one (git-sync run on its own) every
route is as open as upstream's.

Each sidecar package has a module like this one: they share no code (each is its own image,
built from its own folder), and the check is a few lines of the standard library.
"""

from __future__ import annotations

from pathlib import Path

VARIABLE = "PAAS_SYNC_TOKEN_FILE"


class CredentialError(ValueError):
    """The credential file can't be used; the message says why in one sentence."""


def read(path: str) -> bytes:
    """The credential held in ``path`` (surrounding whitespace dropped)."""
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as e:
        raise CredentialError(f"cannot read the credential file {path}: {e.strerror}") from None
    if not secret:
        raise CredentialError(f"the credential file {path} is empty")
    return secret


def allows(secret: bytes | None, authorization: str | None) -> bool:
    """Whether a request with this ``Authorization`` header may pass: always without a
    credential, else if it carries ``secret`` (compared in constant time)."""
    if secret is None:
        return True
    import hmac  # here, not at the top: it loads OpenSSL (3-4 MB), which git-sync without a credential never needs

    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("latin-1", "replace"), secret)
