"""``lanscope ping TARGETS``: which hosts are up, like ``nmap -sn``.

ARP on the local segment, ICMP echo and TCP ping beyond it (see
lanscope.commands._discovery); reverse DNS names and MAC vendors for the hosts
that answered.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from lanscope.commands._discovery import discover_hosts, reverse_names, vendors
from lanscope.commands._targets import add_target_arguments, targets_from_args
from lanscope.config import Config
from lanscope.output import print_json, print_line, print_table, progress

PROGRESS_ABOVE = 1024     # addresses: smaller sweeps finish before a bar would help


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    parser.add_argument("-n", "--no-dns", action="store_true", help="no reverse DNS for the hosts up")
    parser.add_argument("--no-arp", action="store_true", help="ICMP/TCP ping even on the local segment")
    parser.add_argument("--json", action="store_true", help="JSON for machines")


def main(args: argparse.Namespace, config: Config) -> int:
    targets = targets_from_args(args, config)
    start = time.monotonic()
    with progress("ping sweep", targets.count, enabled=None if targets.count > PROGRESS_ABOVE else False) \
            as update:
        hosts = asyncio.run(discover_hosts(targets, config, progress=update, arp=not args.no_arp))
    elapsed = time.monotonic() - start
    ips = [h.ip for h in hosts if h.ip]
    names = {} if args.no_dns else asyncio.run(reverse_names(ips, config))
    makers = asyncio.run(vendors([h.mac for h in hosts if h.mac]))
    if args.json:
        print_json({"targets": list(targets.specs), "addresses": targets.count, "up": len(hosts),
                    "elapsed_secs": round(elapsed, 3),
                    "hosts": [{**_host_dict(h), "hostname": names.get(h.ip or ""),
                               "vendor": makers.get(h.mac or "")} for h in hosts]})
        return 0
    print_table(["address", "hostname", "mac", "vendor", "rtt ms", "ttl", "evidence"],
                [(h.ip, names.get(h.ip or ""), h.mac, makers.get(h.mac or ""), h.rtt_ms, h.ttl, h.evidence)
                 for h in hosts])
    print_line(f"{targets.count} addresses, {len(hosts)} hosts up, in {elapsed:.2f} s")
    return 0


def _host_dict(host: object) -> dict[str, object]:
    import msgspec

    return {k: v for k, v in msgspec.to_builtins(host).items()
            if k in ("ip", "mac", "source", "evidence", "interface", "rtt_ms", "ttl")}
