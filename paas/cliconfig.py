"""The CLI's own config file: the URL and token `paas up` leaves for the other commands."""

from __future__ import annotations

import configparser
import os
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


def config_path() -> Path:
    """Where ``paas up`` leaves the URL and token for the other commands."""
    if os.environ.get("PAAS_CONFIG"):
        return Path(os.environ["PAAS_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "paas" / "config"


def read_config() -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(config_path())
    return dict(parser["paas"]) if parser.has_section("paas") else {}


def write_config(url: str, token: str) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    parser = configparser.ConfigParser()
    parser["paas"] = {"url": url, "token": token}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        parser.write(f)
    return path
