"""Bearer-token auth for the API; HTTP basic (token as password) for git."""

from __future__ import annotations

import hmac

from flask import current_app, request

from paas.errors import Unauthorized


def admin_token() -> str:
    return current_app.config["PAAS_SETTINGS"].token


def same(given: str | None, expected: str) -> bool:
    if not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def require_bearer() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized("missing token: send 'Authorization: Bearer <token>' (paas up prints it)")
    if scheme.lower() != "bearer" or not same(token.strip(), admin_token()):
        raise Unauthorized("invalid token")
