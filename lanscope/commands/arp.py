"""``lanscope arp``: ARP discovery on the local segment plus the kernel's neighbour table.

Every on-link address gets an ARP request (raw AF_PACKET: root or
CAP_NET_RAW); the table shows who answered with MAC, vendor and round-trip
time, then the neighbour entries of hosts that did not answer, with their
kernel state (a STALE entry is a memory, not a live host).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import msgspec

from lanscope.commands._discovery import vendors
from lanscope.commands._targets import add_target_arguments, targets_from_args
from lanscope.config import Config
from lanscope.errors import LanscopeError
from lanscope.output import print_json, print_line, print_table, progress
from producers import arp_sweep
from producers import neighbours as neighbour_table
from schemas import HostSeen


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    parser.add_argument("-i", "--interface", action="append", default=[], metavar="IF",
                        help="sweep only this interface (repeatable)")
    parser.add_argument("--no-neighbours", action="store_true", help="leave out the neighbour table")
    parser.add_argument("--json", action="store_true", help="JSON for machines")


async def _run(args: argparse.Namespace, config: Config,
               update: object) -> tuple[list[HostSeen], list[HostSeen]]:
    targets = targets_from_args(args, config)
    ctx = config.stage_context(progress=update, sweep=targets)  # type: ignore[arg-type]
    section = config.producers.arp_sweep
    if args.interface:
        section = msgspec.structs.replace(section, interfaces=list(args.interface))
    stage = arp_sweep.build(section, ctx)
    try:
        replies = [e for e in await stage.sweep() if isinstance(e, HostSeen)]
    except PermissionError:
        raise LanscopeError("ARP needs root or CAP_NET_RAW (try sudo, or `lanscope ping`)") from None
    neighbours: list[HostSeen] = []
    if not args.no_neighbours:
        answered = {e.ip for e in replies}
        neighbours = [e for e in await neighbour_table.build(config.producers.neighbours, ctx).sweep()
                      if isinstance(e, HostSeen) and e.ip not in answered and e.ip in targets
                      and (not args.interface or e.interface in args.interface)]
    return replies, neighbours


def main(args: argparse.Namespace, config: Config) -> int:
    start = time.monotonic()
    with progress("ARP sweep") as update:
        replies, neighbours = asyncio.run(_run(args, config, update))
    elapsed = time.monotonic() - start
    makers = asyncio.run(vendors([e.mac for e in replies + neighbours if e.mac]))
    if args.json:
        print_json({"elapsed_secs": round(elapsed, 3),
                    "replies": [{"ip": e.ip, "mac": e.mac, "vendor": makers.get(e.mac or ""),
                                 "rtt_ms": e.rtt_ms, "interface": e.interface} for e in replies],
                    "neighbours": [{"ip": e.ip, "mac": e.mac, "vendor": makers.get(e.mac or ""),
                                    "state": e.neighbour_state, "alive": e.alive,
                                    "interface": e.interface} for e in neighbours]})
        return 0
    rows: list[tuple[object, ...]] = [
        (e.ip, e.mac, makers.get(e.mac or ""), e.rtt_ms, e.interface, "arp-reply") for e in replies]
    rows += [(e.ip, e.mac, makers.get(e.mac or ""), None, e.interface, e.neighbour_state)
             for e in neighbours]
    print_table(["address", "mac", "vendor", "rtt ms", "interface", "state"], rows)
    print_line(f"{len(replies)} hosts answered ARP in {elapsed:.2f} s"
                 + (f"; {len(neighbours)} more in the neighbour table" if neighbours else ""))
    return 0
