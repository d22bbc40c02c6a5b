"""``lanscope list TARGETS``: the expanded targets with reverse DNS, like ``nmap -sL``.

No packet goes to the targets (only PTR queries to the DNS server, which -n
turns off). Network, broadcast and multicast addresses are listed, as nmap
does; the sweeps skip them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from lanscope.commands._discovery import reverse_names
from lanscope.commands._targets import add_target_arguments, name_resolver, target_specs
from lanscope.config import Config
from lanscope.net.scope import check_size
from lanscope.net.targets import parse_targets
from lanscope.output import print_json, print_table, printable

MAX_DNS = 4096          # more addresses than this are listed without names unless --dns
MAX_TABLE = 4096        # more rows than this print as plain lines (a table would only be slow)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    parser.add_argument("-n", "--no-dns", action="store_true", help="no reverse DNS")
    parser.add_argument("--dns", action="store_true", help=f"reverse DNS even above {MAX_DNS} addresses")
    parser.add_argument("--json", action="store_true", help="JSON for machines")


def main(args: argparse.Namespace, config: Config) -> int:
    specs, excludes = target_specs(args, config)
    targets = parse_targets(specs, exclude=excludes, resolve=name_resolver(config))
    check_size(targets)           # listing enumerates too: an IPv6 /64 would never end
    names: dict[str, str] = {}
    if not args.no_dns and (targets.count <= MAX_DNS or args.dns):
        names = asyncio.run(reverse_names([str(a) for a in targets], config))
    given = {str(a): n for a, n in targets.names.items()}
    if args.json:
        print_json({"count": targets.count, "specs": list(targets.specs),
                    "targets": [{"ip": str(a), "hostname": names.get(str(a)) or given.get(str(a))}
                                for a in targets]})
        return 0
    if targets.count > MAX_TABLE:
        write = sys.stdout.write
        for address in targets:
            text = str(address)
            name = names.get(text) or given.get(text)
            write(f"{text} {printable(name)}\n" if name else f"{text}\n")     # a PTR name is data
    else:
        print_table(["address", "hostname"],
                    [(str(a), names.get(str(a)) or given.get(str(a))) for a in targets],
                    caption=f"{targets.count} addresses (no packets sent)")
    return 0
