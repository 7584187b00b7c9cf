"""Which host names an app may claim with `hosts:`: none that is someone else's by right.

The router serves every app at ``NAME.<domain>`` and at the names its manifest adds, and the
platform CA certifies them all. A claim on a name that belongs to no app (yet) would route,
and be certified, where it must not: ``localhost`` and the names under it are every
machine's own (RFC 6761), an IP address is no host name at all (a browser takes a name
ending in a number for one), the control plane's own names are the platform's, and
``X.<domain>`` is the app ``X``'s name, whether or not ``X`` exists yet.
"""

from __future__ import annotations

import re
from collections.abc import Collection

LOCALHOST = "localhost"
# WHATWG URL's "ends in a number": the last label all digits, or 0x and hex digits.
_NUMBER = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")


def claim_problems(app: str, hosts: list[str], domain: str, platform: Collection[str] = ()) -> list[str]:
    """`hosts[i]: why` for each of ``hosts`` that ``app`` may not claim; ``platform``: the
    control plane's own host names (besides ``domain`` itself)."""
    found = ((index, _problem(app, host, domain, platform)) for index, host in enumerate(hosts))
    return [f"hosts[{index}]: {problem}" for index, problem in found if problem]


def _problem(app: str, host: str, domain: str, platform: Collection[str]) -> str | None:
    own = f"{app}.{domain}"
    if host == own or host.endswith(f".{own}"):
        return None  # its own name, and the names under it (www.NAME.<domain>)
    if _NUMBER.fullmatch(host.rsplit(".", 1)[-1]):
        return f"{host} is an IP address, not a host name: the router serves apps by host name"
    if host == LOCALHOST or host.endswith(f".{LOCALHOST}"):
        return f"{host} is under localhost, which is every machine's own name; the app is served at {own}"
    if host == domain or host in platform:
        return f"{host} is the platform's own name"
    label, dot, parent = host.partition(".")
    if dot and parent == domain:
        return f"{host} is the app {label}'s name (every app NAME is served at NAME.{domain}); the app is served at {own}"
    return None
