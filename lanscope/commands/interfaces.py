"""``lanscope interfaces``: every NIC with MAC, addresses, state, MTU and driver (no ifconfig)."""

from __future__ import annotations

import argparse

from lanscope.config import Config
from lanscope.net.interfaces import attached_private_networks, interfaces, local_ip
from lanscope.output import print_json, print_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="JSON for machines")


def main(args: argparse.Namespace, config: Config) -> int:
    found = interfaces()
    if args.json:
        print_json({
            "interfaces": [{"name": i.name, "index": i.index, "mac": i.mac, "mtu": i.mtu,
                            "state": i.state, "type": i.link_type, "driver": i.driver,
                            "ipv4": [str(a) for a in i.ipv4], "ipv6": [str(a) for a in i.ipv6]}
                           for i in found],
            "attached_private": [str(n) for n in attached_private_networks(found)],
            "local_ip": local_ip(),
        })
        return 0
    print_table(["name", "state", "mac", "mtu", "driver", "ipv4", "ipv6"],
                [(i.name, i.state, i.mac, i.mtu, i.driver or i.link_type,
                  "\n".join(str(a) for a in i.ipv4), "\n".join(str(a) for a in i.ipv6)) for i in found],
                caption=f"local IP {local_ip()}")
    return 0
