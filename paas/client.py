"""The API client the CLI uses: requests, bearer token, API errors raised as PaasError."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import requests

from paas import credentials
from paas.errors import PaasError


class ApiError(PaasError):
    def __init__(self, status: int, message: str, details: list[str]) -> None:
        super().__init__(message, details)
        self.status = status


class Client:
    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(method, f"{self.url}/api/v1{path}", **kwargs)
        except requests.ConnectionError:
            raise PaasError(f"cannot reach the control plane at {self.url}: is `paas up` running?") from None
        except requests.RequestException as e:
            raise PaasError(f"request to {self.url} failed: {type(e).__name__}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
                raise ApiError(response.status_code, body["error"], body.get("details", []))
            except (ValueError, KeyError, TypeError):
                raise ApiError(
                    response.status_code, f"HTTP {response.status_code} from {self.url}", []
                ) from None
        return response

    def create(self, manifest: bytes, content_type: str, password: str | None = None) -> dict:
        headers = _manifest_headers(content_type, password)
        return self.request("POST", "/apps", data=manifest, headers=headers).json()

    def apps(self) -> list[dict]:
        return self.request("GET", "/apps").json()["apps"]

    def get(self, name: str) -> dict:
        return self.request("GET", f"/apps/{name}").json()

    def apply(self, name: str, manifest: bytes, content_type: str, password: str | None = None) -> dict:
        headers = _manifest_headers(content_type, password)
        return self.request("PUT", f"/apps/{name}", data=manifest, headers=headers, timeout=None).json()

    def config(self, name: str) -> dict:
        return self.request("GET", f"/apps/{name}/config").json()

    def set_config(self, name: str, changes: dict[str, str | None]) -> dict:
        return self.request("PUT", f"/apps/{name}/config", json=changes, timeout=None).json()

    def restart(self, name: str, hard: bool = False) -> dict:
        return self.request("POST", f"/apps/{name}/restart", json={"hard": hard}, timeout=None).json()

    def delete(self, name: str) -> dict:
        return self.request("DELETE", f"/apps/{name}").json()

    def releases(self, name: str) -> list[dict]:
        return self.request("GET", f"/apps/{name}/releases").json()["releases"]

    def rollback(self, name: str, revision: str | None = None) -> dict:
        body = {} if revision is None else {"revision": revision}
        return self.request("POST", f"/apps/{name}/rollback", json=body).json()

    def export(self, name: str, params: dict[str, str]) -> str:
        return self.request("GET", f"/apps/{name}/export", params=params).text

    def ca(self) -> str:
        return self.request("GET", "/ca").text

    def certificates(self, name: str) -> dict:
        return self.request("GET", f"/apps/{name}/certs").json()

    def add_certificate(self, name: str, chain: str, key: str) -> dict:
        return self.request("PUT", f"/apps/{name}/certs", json={"certificate": chain, "key": key}).json()

    def remove_certificate(self, name: str) -> dict:
        return self.request("DELETE", f"/apps/{name}/certs").json()

    def processes(self, name: str) -> list[dict]:
        return self.request("GET", f"/apps/{name}/processes").json()["processes"]

    def logs(self, name: str, follow: bool = False, tail: int = 200) -> Iterator[str]:
        params = {"follow": int(follow), "tail": tail}
        response = self.request(
            "GET", f"/apps/{name}/logs", params=params, stream=True, timeout=None if follow else self.timeout
        )
        yield from response.iter_lines(decode_unicode=True)


def _manifest_headers(content_type: str, password: str | None) -> dict[str, str]:
    """A manifest's headers; with ``password``, the repository password given apart from it."""
    headers = {"Content-Type": content_type}
    if password is not None:
        headers[credentials.HEADER] = quote(password, safe="")
    return headers
