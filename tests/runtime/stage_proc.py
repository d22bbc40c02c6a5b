"""A stage process for the crash tests: the real runner with a sqlite sink, until SIGTERM.

    python -m tests.runtime.stage_proc URL DB_PATH NAME [--batch N] [--delay SECS] [--ack-wait SECS]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

import msgspec

from lanscope.config import NatsConfig
from lanscope.runtime.bus import Bus
from lanscope.runtime.runner import Runner, RunnerOptions
from lanscope.runtime.topology import Kind
from tests.runtime.stages import SqliteSink, spec


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("db", type=Path)
    parser.add_argument("name")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--ack-wait", type=float, default=30.0)
    args = parser.parse_args(argv)
    config = msgspec.structs.replace(NatsConfig(), url=args.url, max_deliver=3, nak_backoff_ms=100,
                                     shutdown_grace_secs=5.0)
    bus = await Bus.connect(config, name=f"stage-proc-{args.name}")
    stage_spec = spec(args.name, Kind.SINK, batch_size=args.batch, ack_wait_secs=args.ack_wait)
    await bus.provision([stage_spec])
    runner = Runner(bus, RunnerOptions.from_config(config))
    runner.add(stage_spec, SqliteSink(args.db, write_delay_secs=args.delay), flush_ms=50)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.stop)
    print("ready", flush=True)
    try:
        await runner.run()
    finally:
        await bus.close()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(main(sys.argv[1:])))
