"""The pod's credential: a secret only the platform and the pod hold, in a file of the pod's
secret volume (`CONFIG_TOKEN_FILE`). With one, `PUT /config` and `GET /status` answer only
requests that carry it as ``Authorization: Bearer <secret>``, and the sidecar sends it to the
runtime's status endpoint (`reload: signal`); without one (the sidecar run on its own) they
are open, as before.

Each sidecar package has a module like this one: they share no code (each is its own image,
built from its own folder), and the check is a few lines of the standard library.
"""

from __future__ import annotations

import hmac
from pathlib import Path


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
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("latin-1", "replace"), secret)


def header(secret: bytes | None) -> dict[str, str]:
    """The header that carries ``secret`` to another container of the pod (none without one)."""
    return {"Authorization": f"Bearer {secret.decode('latin-1')}"} if secret is not None else {}
