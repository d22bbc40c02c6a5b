"""``lanscope provision``: create or update the streams and durable consumers, idempotently."""

from __future__ import annotations

import argparse
import asyncio

from lanscope.config import Config
from lanscope.output import print_table
from lanscope.runtime.datadir import private
from lanscope.runtime.embedded import EmbeddedNats
from lanscope.runtime.locate import configured_url
from lanscope.runtime.provisioning import Provisioned, connect_admin


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Create or update the JetStream streams and one durable pull consumer per "
                          "consuming stage. Safe to run any number of times. With no nats.url it "
                          "provisions the embedded server's store in <data_dir>/nats.")


def main(args: argparse.Namespace, config: Config) -> int:
    with private(config.data_dir):
        return _provision_and_show(config)


def _provision_and_show(config: Config) -> int:
    embedded: EmbeddedNats | None = None
    url = configured_url(config.nats, config.data_dir)
    if not url:
        from lanscope.runtime.leafnodes import server_role

        embedded = EmbeddedNats.from_config(config.nats, config.data_dir, role=server_role(config))
        url = embedded.start()
    try:
        results = asyncio.run(_provision(config, url))
    finally:
        if embedded is not None:
            embedded.stop()
    print_table(["kind", "name", "action", "detail"],
                [(r.kind, r.name, r.action, r.detail) for r in results], caption=url)
    return 0


async def _provision(config: Config, url: str) -> list[Provisioned]:
    specs, layout = config.stage_specs().values(), config.layout()
    claims = any(spec.uses_claims and layout.runs(spec) for spec in specs)
    async with await connect_admin(config, url, claims=claims) as bus:
        return await bus.provision(specs)
