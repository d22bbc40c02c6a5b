"""``lanscope hub-config``: the nats-server configuration of a hub whose NATS is not embedded.

A hub on a NATS cluster (compose.hub.yaml: three nodes, R3 streams) needs on
every node what an embedded hub generates for itself: the JetStream domain, the
leaf node listener the sensors connect to, and one user per site allowed only
what copying that site's events needs (lanscope.runtime.leafnodes), beside the
user lanscope's own hub processes connect as (``nats.user``, its password from
the node's environment, ``$LANSCOPE_NATS_PASSWORD``). Include the output in each
node's config (deploy/nats-hub.conf does).
"""

from __future__ import annotations

import argparse
import sys

from lanscope.config import Config
from lanscope.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Print the nats-server config a hub's NATS nodes include: the JetStream "
                          "domain, the leaf node listener and every site's user (from hub: in the config).")


def main(args: argparse.Namespace, config: Config) -> int:
    if config.role != "hub":
        raise UsageError("hub-config needs a config with role: hub (and its hub.sites)")
    if not config.nats.user:
        raise UsageError("set nats.user: the user lanscope's hub processes connect as")
    from lanscope.runtime.leafnodes import hub_server_config

    sys.stdout.write(hub_server_config(config))    # a config file: as it is, not a table
    return 0
