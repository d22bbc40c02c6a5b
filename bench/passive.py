"""Benchmark: a device's first packet -> its `new` event, through the passive listener.

    .venv/bin/python -m bench.passive [--joins 25] [--kinds dhcp,arp] [--gap-ms 300]

As root: brings the lab up (LANSCOPE_LAB_PREFIX), moves into its scanner
namespace, starts a nats-server of its own (the embedded binary, temporary
store) and ``lanscope run`` with the passive listener, the MAC vendor and DNS
name enrichers and host_state at their default settings (host_state's
``flush_ms`` 200 included). Then, ``--joins`` times per kind, a device the LAN
has never seen joins (tests/lab/join.py: a fresh namespace and veth with a
new MAC in the scanner's bridge, IPv6 off so nothing else speaks first):

- ``dhcp``: BusyBox udhcpc asks the lab's dnsmasq for a lease; its first
  packet is the DHCP DISCOVER;
- ``arp``: the device has a static address and sends one datagram to the
  scanner; its first packet is the ARP request for the scanner's MAC.

The clock starts just before the device's first packet is due (before
udhcpc / the sending process starts: process start-up counts against us) and
stops when ``lanscope.host.changed.new`` for its MAC reaches a subscriber in
this process. Reports p50, p95 and max per kind. Sends packets only inside
the lab's namespaces. Goal (issue 23): p95 <= 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lanscope.config import NatsConfig
from lanscope.runtime.bus import Bus
from lanscope.runtime.embedded import EmbeddedNats
from schemas import ChangeKind, HostChanged, decode
from tests.e2e.harness import Lanscope, lab_config, percentile
from tests.lab import Lab
from tests.lab.join import join, leave, speak

STAGES = ("passive", "mac_vendor", "dns_names", "host_state")
FIRST = 2000          # join numbers used here (tests use < 1000)


def config_text(lab: Lab, data_dir: Path, url: str) -> str:
    return lab_config(lab, data_dir, url, offlink=False)



async def run(args: argparse.Namespace, lab: Lab, url: str, work: Path) -> dict[str, list[float]]:
    config = work / "config.yaml"
    config.write_text(config_text(lab, work / "var", url))
    process = Lanscope(config, STAGES, work / "lanscope.log").start()
    arrived: dict[str, float] = {}
    results: dict[str, list[float]] = {kind: [] for kind in args.kinds}
    try:
        async with await Bus.connect(NatsConfig(url=url), name="bench-passive") as bus:
            async def on_new(msg: Any) -> None:
                event = decode(msg.data)
                if isinstance(event, HostChanged) and event.kind is ChangeKind.NEW:
                    arrived.setdefault(event.host_key, time.time())

            await bus.nc.subscribe("lanscope.host.changed.new", cb=on_new)
            # Warm-up (not measured): joins until one is new, so the listener is up.
            for attempt in range(30):
                try:
                    await one(lab, "dhcp", FIRST - 100 + attempt, arrived, timeout=2)
                    break
                except TimeoutError:
                    continue
            else:
                raise TimeoutError(f"the pipeline never said `new`; see {work / 'lanscope.log'}")
            number = FIRST
            for i in range(args.joins):
                for kind in args.kinds:
                    took = await one(lab, kind, number, arrived, timeout=10)
                    results[kind].append(took)
                    print(f"{kind} join {i + 1}: {took * 1000:.0f} ms", file=sys.stderr)
                    number += 1
                    await asyncio.sleep(args.gap_ms / 1000)
    finally:
        process.terminate()
    return results


async def one(lab: Lab, kind: str, number: int, arrived: dict[str, float], *, timeout: float) -> float:
    """One device joins; seconds from its first packet's start to its `new` event."""
    try:
        if kind == "dhcp":
            joined = await asyncio.to_thread(join, lab, number, hostname=f"bench-{number}", ipv6=False)
        else:
            ip = f"198.18.3.{number % 250 + 1}"
            joined = await asyncio.to_thread(speak, lab, number, ip)
        deadline = time.monotonic() + timeout
        while joined.mac not in arrived:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no `new` for {kind} join {joined.mac} within {timeout}s")
            await asyncio.sleep(0.005)
        return arrived[joined.mac] - joined.asked_at
    finally:
        await asyncio.to_thread(leave, lab, number)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joins", type=int, default=25, help="joins per kind (default 25)")
    parser.add_argument("--kinds", default="dhcp,arp", type=lambda t: [k for k in t.split(",") if k])
    parser.add_argument("--gap-ms", type=float, default=300, help="pause between joins")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench.passive needs root (the lab)", file=sys.stderr)
        return 4
    lab = Lab.from_env()
    lab.up()
    lab.enter_scanner()
    work = Path(tempfile.mkdtemp(prefix="lanscope-bench-passive-"))
    natsd = EmbeddedNats(work / "nats")
    url = natsd.start()
    try:
        results = asyncio.run(run(args, lab, url, work))
    finally:
        natsd.stop()
        lab.leave_scanner()
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nfirst packet -> `new` event, {args.joins} joins per kind (host_state flush_ms 200):")
    print("| first packet | joins | p50 | p95 | max |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for kind, values in results.items():
        ms = [v * 1000 for v in values]
        print(f"| {'DHCP DISCOVER' if kind == 'dhcp' else 'ARP request'} | {len(ms)} | "
              f"{statistics.median(ms):.0f} ms | {percentile(ms, 95):.0f} ms | {max(ms):.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
