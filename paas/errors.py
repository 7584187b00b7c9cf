"""One exception hierarchy, translated once at each edge (HTTP handler, CLI)."""

from __future__ import annotations


class PaasError(Exception):
    """A failure a user can act on. ``status`` is the HTTP status the API answers with."""

    status = 500

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def to_json(self) -> dict:
        return {"error": self.message, "details": self.details}


class InvalidInput(PaasError):
    status = 400


class InvalidManifest(InvalidInput):
    pass


class InvalidAppName(InvalidInput):
    pass


class Unauthorized(PaasError):
    status = 401


class AppNotFound(PaasError):
    status = 404


class RevisionNotFound(PaasError):
    status = 404


class CertificateNotFound(PaasError):
    status = 404


class AppExists(PaasError):
    status = 409


class PortInUse(PaasError):
    status = 409


class Conflict(PaasError):
    """The app's current state doesn't allow what was asked (the message says how to)."""

    status = 409


class BackendUnavailable(PaasError):
    status = 503
