"""``paas-runtime``: the hot-reload supervisor's entry point."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from .build import RUNTIMES
from .errors import ListenFailed
from .settings import ConfigError, Settings
from .supervisor import Supervisor

log = logging.getLogger("paas_runtime")

EPILOG = """\
environment:
  PORT                 public port the app is served on (required)
  PAAS_BIND            HOST:PORT the public port listens on (default every address)
  PAAS_APP_DIR         symlink to the current revision (default /workspace/current)
  PAAS_RUN             command to run (default: Procfile "web:", else the runtime's)
  PAAS_HEALTHCHECK     path that must answer below 500 before traffic moves (default /)
  PAAS_HEALTH_TIMEOUT  seconds a new instance has to become healthy (default 30)
  PAAS_RUNTIME         python | node | static (default: detected from the code)
  PAAS_CACHE_DIR       dependency cache (default <dir of PAAS_APP_DIR>/.cache)
  PAAS_STATUS_BIND     HOST:PORT of the status endpoint, GET /status (default: none)
  PAAS_STATUS_TOKEN_FILE  a file holding the pod's credential, which GET /status and
                       PUT /settings then require (Authorization: Bearer); without it
                       PUT /settings is refused: a command never comes from the network
every other variable is passed to the app.
"""


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="paas-runtime",
        description="Serve the revision a git-sync link points at; hot-swap it on every change.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="paas-runtime: %(message)s")
    try:
        settings = Settings.from_env(os.environ, tuple(RUNTIMES))
    except ConfigError as e:
        for problem in e.problems:
            print(f"paas-runtime: error: {problem}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(settings))
    except ListenFailed as e:
        log.error("%s", e)
        return 1
    return 0


async def _serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Supervisor(settings).run(stop)
