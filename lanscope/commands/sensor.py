"""``lanscope sensor``: ``lanscope run`` with ``role: sensor`` (the producers and port_probe of one site).

Its embedded nats-server joins the hub (``sensor.hub``) as a leaf node and keeps
the site's events in its own JetStream until the hub has copied them
(lanscope.runtime.layout, lanscope.runtime.leafnodes). ``--key`` prints the
sensor's NKEY public key (made on first use), which the hub lists under
``hub.sites.<site>.nkey``.
"""

from __future__ import annotations

import argparse

import msgspec

from lanscope.commands import run
from lanscope.config import Config
from lanscope.errors import UsageError
from lanscope.output import print_line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    run.add_arguments(parser)
    parser.add_argument("--key", action="store_true",
                        help="print this sensor's NKEY public key (for the hub's hub.sites) and exit")


def main(args: argparse.Namespace, config: Config) -> int:
    if config.role == "hub":
        raise UsageError("this config says role: hub; a sensor's config says role: sensor (or leaves it out)")
    config = msgspec.structs.replace(config, role="sensor")
    wanted = ("site",) if args.key else ("site", "sensor")
    problems = [f"{key}: {why}" for key, why in config.check() if key.startswith(wanted)]
    if problems:
        raise UsageError("; ".join(problems))
    if args.key:
        from lanscope.runtime.datadir import private
        from lanscope.runtime.leafnodes import public_key, seed_path, sensor_seed

        with private(config.data_dir):       # the seed goes into <data_dir>/credentials: 0700, 0600
            key = public_key(sensor_seed(config))
        print_line(key)
        print_line(f"# hub config: hub.sites.{config.site}.nkey (seed: {seed_path(config)})")
        return 0
    return run.main(args, config)
