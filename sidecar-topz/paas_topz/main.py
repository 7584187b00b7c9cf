"""`paas-topz`: parameters from the environment first (`TOPZ_ADDR`, `TOPZ_SAMPLE`,
`TOPZ_TOKEN_FILE`), then flags."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from paas_topz import __version__, credential, server

DEFAULT_ADDR = "0.0.0.0:8080"


def parse_addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 0.0.0.0:8080)")
    return host.strip("[]") or "0.0.0.0", int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="paas-topz",
        description="Serve the processes of this PID namespace (a pod's) at /topz.",
        epilog="environment: TOPZ_ADDR (HOST:PORT, default 0.0.0.0:8080), TOPZ_SAMPLE (seconds, default 0.1), "
        "TOPZ_TOKEN_FILE (the pod's credential, which /topz then requires; default none)",
    )
    parser.add_argument("--addr", type=parse_addr, default=None, help=f"HOST:PORT to listen on ($TOPZ_ADDR; default {DEFAULT_ADDR})")
    parser.add_argument("--sample", type=float, default=None, help="seconds over which CPU %% is measured ($TOPZ_SAMPLE; default 0.1)")
    parser.add_argument("--token-file", default=None,
                        help="a file holding the pod's credential, which /topz then requires ($TOPZ_TOKEN_FILE)")
    parser.add_argument("--version", action="version", version=__version__)
    args = parser.parse_args(argv)
    try:
        host, port = args.addr or parse_addr(os.environ.get("TOPZ_ADDR") or DEFAULT_ADDR)
        sample = args.sample if args.sample is not None else float(os.environ.get("TOPZ_SAMPLE") or 0.1)
    except (argparse.ArgumentTypeError, ValueError) as e:
        print(f"paas-topz: error: TOPZ_ADDR or TOPZ_SAMPLE: {e}", file=sys.stderr)
        return 2
    if not 0 < sample <= 10:
        print("paas-topz: error: the sample must be between 0 and 10 seconds", file=sys.stderr)
        return 2
    token_file = args.token_file if args.token_file is not None else os.environ.get("TOPZ_TOKEN_FILE", "")
    try:
        secret = credential.read(token_file) if token_file else None
    except credential.CredentialError as e:
        print(f"paas-topz: error: TOPZ_TOKEN_FILE: {e}", file=sys.stderr)
        return 2
    try:
        server.serve(host, port, sample, lambda bound: print(f"paas-topz: serving /topz on {bound[0]}:{bound[1]}", flush=True),
                     secret)
    except OSError as e:
        print(f"paas-topz: error: cannot listen on {host}:{port}: {e.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
