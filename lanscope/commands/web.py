"""``lanscope web``: the dashboard on its own.

Against a running pipeline (it finds the embedded NATS through data_dir, or uses
nats.url) it shows live events and pipeline health and can ask for a probe;
with no pipeline it reads the DuckDB file read-only, and joins the pipeline as
soon as one starts. ``lanscope run`` serves the same dashboard itself.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import msgspec

from lanscope.config import Config
from lanscope.output import print_line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="listen on this address (default: web.address, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen on this port (default: web.port, 8080; 0: any free)")


def main(args: argparse.Namespace, config: Config) -> int:
    from lanscope.web.server import bind

    changes = {k: v for k, v in (("address", args.address), ("port", args.port)) if v is not None}
    if changes:
        config = msgspec.structs.replace(config, web=msgspec.structs.replace(config.web, **changes))
    sock = bind(config)
    asyncio.run(_serve(config, sock))
    return 0


async def _serve(config: Config, sock: object) -> None:
    from lanscope.web.server import WebServer

    server = WebServer(config, sock)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    print_line(f"Dashboard: {server.url} (Ctrl-C to stop)")
    await server.run()
