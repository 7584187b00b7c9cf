"""App names: the one place they are checked."""

from __future__ import annotations

import re

from paas.errors import InvalidAppName

# A DNS label (RFC 1123), at most 40 characters so that derived names
# (`paas-<app>-<container>`, Kubernetes objects) stay within 63.
APP_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
APP_NAME_RULE = (
    "a DNS label: lowercase letters, digits and '-', 1-40 characters, not starting or ending with '-'"
)


def is_app_name(name: object) -> bool:
    return isinstance(name, str) and bool(APP_NAME.fullmatch(name))


def check_app_name(name: object) -> str:
    """Return ``name`` if it is a valid app name, else raise; names are rejected, never rewritten."""
    if not is_app_name(name):
        shown = repr(name) if len(str(name)) <= 80 else repr(str(name)[:80] + "…")
        raise InvalidAppName(f"invalid app name {shown}: must be {APP_NAME_RULE}")
    return name  # type: ignore[return-value]


# A host name: dot-separated DNS labels, lowercase, at most 253 characters (no wildcards).
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def is_host_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= 253
        and all(_LABEL.fullmatch(label) for label in name.split("."))
    )
