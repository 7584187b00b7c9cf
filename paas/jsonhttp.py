"""JSON over HTTP to the pods' containers (git-sync's `POST /sync`, status endpoints, topz),
with the standard library: the control plane's worker stays small without `requests`. Each
call carries the pod's credential, which every control endpoint of a pod wants: so it goes
straight to the address asked — no proxy from the environment, no redirect followed."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

MAX_BYTES = 10_000_000


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A pod's endpoints never redirect; a 3xx is answered as it is, never followed (urllib
    would send the credential on to wherever it points)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


class Unreachable(Exception):
    """Nothing answered: refused, timed out, or not HTTP."""

    def __init__(self, reason: str, refused: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused


def call(
    method: str,
    url: str,
    timeout: float,
    params: dict[str, str] | None = None,
    body: Any = None,
    credential: str | None = None,
) -> tuple[int, Any]:
    """(status, the answer's JSON, or None if it wasn't JSON); ``body`` is sent as JSON,
    ``credential`` (the pod's) as ``Authorization: Bearer``. Raises Unreachable."""
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    data = json.dumps(body).encode() if body is not None else (b"" if method in ("POST", "PUT") else None)
    headers = {"Content-Type": "application/json"}
    if credential:
        headers["Authorization"] = f"Bearer {credential}"
    request = urllib.request.Request(url, method=method, data=data, headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status, body = response.status, response.read(MAX_BYTES)
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read(MAX_BYTES)
    except urllib.error.URLError as e:
        refused = isinstance(e.reason, ConnectionRefusedError)
        raise Unreachable(type(e.reason).__name__ if isinstance(e.reason, Exception) else str(e.reason), refused) from None
    except (TimeoutError, OSError, ValueError) as e:
        raise Unreachable(type(e).__name__) from None
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, None
