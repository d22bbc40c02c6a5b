"""``lanscope hub-config DIR``: credentials and nats-server config of a hub whose NATS is not embedded.

A hub on a NATS cluster (compose.hub.yaml: three nodes, R3 streams) needs on
every node what an embedded hub generates for itself: the leaf node listener
the sensors connect to, one NKEY user per site allowed only what copying that
site's events needs (lanscope.runtime.leafnodes), and one NKEY user per role of
the hub's own processes with that role's permissions (lanscope.runtime.auth).
This writes each role's seed into DIR (``<role>.nk``, 0600; kept if present)
and ``DIR/auth.conf``, which each node's config includes (deploy/nats-hub.conf
does) beside its ``jetstream { domain: <hub.domain> }``. Each hub service gets
only its own role's seed (``nats.credentials_dir``). Run it again after
changing ``hub.sites``, and restart the nodes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lanscope.config import Config
from lanscope.errors import UsageError
from lanscope.output import print_line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Write the NKEY seed of every role of a hub into DIR (kept if present) and "
                          "DIR/auth.conf, the part of each hub NATS node's config with the leaf node "
                          "listener, the roles' users and every site's user (from hub: in the config).")
    parser.add_argument("directory", metavar="DIR", help="where the seeds and auth.conf go")


def main(args: argparse.Namespace, config: Config) -> int:
    if config.role != "hub":
        raise UsageError("hub-config needs a config with role: hub (and its hub.sites)")
    from lanscope.runtime.auth import Credentials
    from lanscope.runtime.leafnodes import hub_server_config

    directory = Path(args.directory)
    text = hub_server_config(config, Credentials(directory))
    path = directory / "auth.conf"
    path.write_text(text)           # public keys only: the NATS nodes read it
    roles = sorted(p.stem for p in directory.glob("*.nk"))
    print_line(f"{len(roles)} roles ({', '.join(roles)}), {len(config.hub.sites)} sites: seeds "
               f"{directory}/<role>.nk, each node's part {path}")
    return 0
