"""`paas-https`: parameters from the environment first, then flags (a flag wins)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from paas_https import __version__
from paas_https.certs import Certificates, refuse_quietly_names_not_ascii
from paas_https.relay import Policy
from paas_https.server import Server, listen


class ParameterError(ValueError):
    pass


def _address(value: str, what: str, default_host: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT``."""
    host, sep, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ParameterError(f"{what}: {value!r} is not a port (or HOST:PORT)")
    return (host.strip("[]") or default_host) if sep else default_host, int(port)


def _either(p: dict[str, str], addr: str, port: str, default_host: str) -> tuple[str, int]:
    """The ``addr`` parameter (HOST:PORT) when given, else the ``port`` one."""
    name = addr if p[addr] else port
    return _address(p[name], name, default_host)


def _number(value: str, what: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ParameterError(f"{what}: {value!r} is not a number") from None
    if number < 0:
        raise ParameterError(f"{what}: {value!r} must not be negative")
    return number


def _flag(value: str, what: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("", "0", "false", "no", "off"):
        return False
    raise ParameterError(f"{what}: {value!r} is not 1 or 0")


PARAMETERS = {  # variable: (flag, default, help)
    "HTTPS_PORT": ("--https-port", "8443", "port (or HOST:PORT) to take TLS on; plain HTTP on it is redirected or forwarded"),
    "HTTPS_ADDR": ("--https-addr", "", "HOST:PORT to listen on; wins over HTTPS_PORT (what a paas backend sets)"),
    "PROXY_PORT": ("--proxy-port", "8000", "the port on localhost to forward traffic to (or HOST:PORT)"),
    "PROXY_ADDR": ("--proxy-addr", "", "HOST:PORT of the service; wins over PROXY_PORT"),
    "CERT_FILE": ("--cert-file", "", "certificate chain (PEM); none: a self-signed one made at start"),
    "KEY_FILE": ("--key-file", "", "the certificate's private key (PEM)"),
    "CERT_DIR": ("--cert-dir", "", "a directory of more pairs, NAME.crt with NAME.key, each served for the names it covers (SNI); CERT_FILE's pair serves every other name"),
    "CERT_RELOAD_SECONDS": ("--cert-reload-seconds", "2", "how often the files are checked for a rotated certificate (SIGHUP: at once)"),
    "HTTP_PORT": ("--http-port", "", "an extra plain-HTTP port (or HOST:PORT); empty: none"),
    "HTTPS_REDIRECT": ("--redirect", "0", "1: answer plain HTTP with 308 to https://"),
    "HTTPS_REDIRECT_PORT": ("--redirect-port", "", "the port redirects name when the request came in through another port (e.g. a router's TLS port); empty: 443"),
    "HSTS_MAX_AGE": ("--hsts-max-age", "0", "seconds of Strict-Transport-Security sent over TLS; 0: none"),
    "IDLE_TIMEOUT": ("--idle-timeout", "75", "seconds a kept-alive client may stay silent"),
    "MAX_CONNECTIONS": ("--max-connections", "1024", "connections served at once (more wait to be accepted)"),
}


def _parameters(argv: Sequence[str] | None) -> dict[str, str]:
    parser = argparse.ArgumentParser(
        prog="paas-https",
        description="Terminate TLS and forward HTTP to a service on localhost (the https sidecar).",
        epilog="Each flag's variable gives its default; see the README for the image's parameters.",
    )
    for variable, (flag, default, text) in PARAMETERS.items():
        parser.add_argument(flag, dest=variable, default=None, help=f"{text} (${variable}; default {default or 'none'})")
    parser.add_argument("--version", action="version", version=__version__)
    args = vars(parser.parse_args(argv))
    return {v: args[v] if args[v] is not None else os.environ.get(v, default) for v, (_, default, _) in PARAMETERS.items()}


def _log(text: str) -> None:
    print(f"paas-https: {text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = _parameters(argv)
    try:
        https = _either(p, "HTTPS_ADDR", "HTTPS_PORT", "0.0.0.0")
        upstream = _either(p, "PROXY_ADDR", "PROXY_PORT", "127.0.0.1")
        http = _address(p["HTTP_PORT"], "HTTP_PORT", https[0]) if p["HTTP_PORT"] else None
        redirect_port = int(_address(p["HTTPS_REDIRECT_PORT"], "HTTPS_REDIRECT_PORT", "")[1]) if p["HTTPS_REDIRECT_PORT"] else None
        policy = Policy(
            upstream=upstream,
            https_port=https[1],
            redirect=_flag(p["HTTPS_REDIRECT"], "HTTPS_REDIRECT"),
            redirect_port=redirect_port,
            hsts_max_age=int(_number(p["HSTS_MAX_AGE"], "HSTS_MAX_AGE")),
            idle_timeout=_number(p["IDLE_TIMEOUT"], "IDLE_TIMEOUT") or 75.0,
        )
        reload_every = _number(p["CERT_RELOAD_SECONDS"], "CERT_RELOAD_SECONDS") or 2.0
        max_connections = int(_number(p["MAX_CONNECTIONS"], "MAX_CONNECTIONS")) or 1024
        if bool(p["CERT_FILE"]) != bool(p["KEY_FILE"]):
            raise ParameterError("CERT_FILE and KEY_FILE go together: give both, or neither for a self-signed certificate")
    except ParameterError as e:
        _log(f"error: {e}")
        return 2
    refuse_quietly_names_not_ascii(_log)
    try:
        certificates = (Certificates(p["CERT_FILE"], p["KEY_FILE"], _log, p["CERT_DIR"]) if p["CERT_FILE"]
                        else Certificates.made_at_start(_log, p["CERT_DIR"]))
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        _log(f"error: the certificate {p['CERT_FILE']} with key {p['KEY_FILE']} did not load: {e}")
        return 1
    listeners = []
    for host, port in [https, *([http] if http else [])]:
        try:
            listeners.append(listen(host, port))
        except OSError as e:
            _log(f"error: cannot listen on {host}:{port}: {e.strerror}")
            return 1
    server = Server(listeners, certificates, policy, max_connections)
    server.start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    signal.signal(signal.SIGHUP, lambda *_: certificates.check())
    extra = f"; plain HTTP also on {http[0]}:{http[1]}" if http else ""
    _log(f"TLS on {https[0]}:{https[1]} (SHA-256 {certificates.fingerprint}), forwarding to "
         f"{upstream[0]}:{upstream[1]}{extra}; plain HTTP is {'redirected' if policy.redirect else 'forwarded'}")
    while not stopped.wait(reload_every):
        certificates.check()
    server.stop()
    return 0
