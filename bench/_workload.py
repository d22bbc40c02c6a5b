"""bench.pipeline's workloads and its publisher process (``--role publish``).

The throughput workload (half ARP sightings, half port snapshots over a fleet of
hosts) and the two latency mixes: ``NewHosts`` (every event a new host) and
``KnownMix`` (re-sightings of known hosts with a share of real changes, each
remembered with the time it was published).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime
from typing import Any

from lanscope.config import NatsConfig
from lanscope.runtime.bus import Bus
from lanscope.runtime.ids import fill_producer_ids
from schemas import Event, HostAnnotated, HostSeen, PortResult, PortsProbed, PortState, Protocol, encode
from schemas.subjects import subject_for


def mac_of(i: int) -> str:
    octets = (0x02, 0x10, (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255)
    return ":".join(f"{b:02x}" for b in octets)


def ip_of(i: int) -> str:
    return f"198.18.{(i >> 8) & 255}.{i & 255}"


def fleet(events: int) -> int:
    """The throughput workload's hosts: a tenth of the events (each host seen ~10 times),
    at most 20,000 (a long run is the same LAN for longer, not a bigger LAN)."""
    return min(max(1, events // 10), 20_000)


_PORT22 = PortResult(protocol=Protocol.TCP, port=22, state=PortState.OPEN, service="ssh",
                     product="OpenSSH", version="9.2p1", banner="SSH-2.0-OpenSSH_9.2p1")
_PORT80 = PortResult(protocol=Protocol.TCP, port=80, state=PortState.OPEN, service="http")


def arp_seen(h: int, now: datetime, sweep_id: str) -> HostSeen:
    """Host `h` answering an ARP sweep."""
    return HostSeen(host_key=mac_of(h), observed_at=now, source="arp", ip=ip_of(h), mac=mac_of(h),
                    evidence="arp-reply", sweep_id=sweep_id)


def probed(h: int, now: datetime, ports: list[PortResult], duration_ms: float) -> PortsProbed:
    """A port snapshot of host `h` (by MAC and IP)."""
    return PortsProbed(host_key=mac_of(h), observed_at=now, source="port_probe", ip=ip_of(h),
                       mac=mac_of(h), ports=ports, duration_ms=duration_ms)


def workload(n: int, hosts: int, salt: str) -> list[Event]:
    """Half sightings, half probe results, over `hosts` hosts (so most events update a known host)."""
    now = datetime.now(UTC)
    ports = [_PORT22, _PORT80]
    return [arp_seen(i % hosts, now, f"{salt}-{i}") if i % 2 == 0
            else probed(i % hosts, now, ports, float(i)) for i in range(n)]


def messages(events: list[Event]) -> list[tuple[str, bytes, str]]:
    fill_producer_ids(events)
    return [(subject_for(e), encode(e), e.id) for e in events]


async def publish_role(args: argparse.Namespace) -> dict[str, Any]:
    bus = await Bus.connect(NatsConfig(url=args.url), name="bench-publisher")
    try:
        if args.rate:
            return await _paced(bus, args)
        batch = messages(workload(args.events, fleet(args.events), args.salt))
        start_wall, start, cpu = time.time(), time.perf_counter(), time.process_time()
        if args.mode == "sync":
            for subject, payload, msg_id in batch:
                await bus.publish_bytes(subject, payload, msg_id=msg_id)
        else:
            await bus.publish_many(batch)
        return {"start": start_wall, "secs": time.perf_counter() - start, "events": len(batch),
                "cpu": time.process_time() - cpu}
    finally:
        await bus.close()


async def _paced(bus: Bus, args: argparse.Namespace) -> dict[str, Any]:
    """The --mix stream at `rate`/s, stamped when sent; whatever is due goes out every few ms.

    Returns, besides the timing, every changing event as (host_key, observed_at)."""
    total = int(args.rate * args.secs)
    mix: NewHosts | KnownMix = (NewHosts(args.salt) if args.mix == "new" else
                                KnownMix(args.hosts, args.change_share, args.salt))
    sent = 0
    start_wall, start = time.time(), time.perf_counter()
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * args.rate) + 1)
        if due > sent:
            now = datetime.now(UTC)
            await bus.publish_many(messages([mix.event(i, now) for i in range(sent, due)]))
            sent = due
        await asyncio.sleep(max(0.0, start + sent / args.rate - time.perf_counter()))
    return {"start": start_wall, "secs": time.perf_counter() - start, "events": sent,
            "changes": mix.changes}


class NewHosts:
    """The worst case: every event a sighting of a host never seen before."""

    def __init__(self, salt: str) -> None:
        self.salt = salt
        self.changes: list[tuple[str, float]] = []

    def event(self, i: int, now: datetime) -> Event:
        h = 1_000_000 + i
        self.changes.append((mac_of(h), now.timestamp()))
        return arp_seen(h, now, f"{self.salt}-{i}")


def known_hosts(hosts: int, salt: str) -> list[Event]:
    """What --mix known starts from: each host seen by ARP with ports 22 and 80 open."""
    now = datetime.now(UTC)
    events: list[Event] = []
    for h in range(hosts):
        events += [arp_seen(h, now, f"{salt}-pre"), probed(h, now, [_PORT22, _PORT80], 0.0)]
    return events


class KnownMix:
    """Re-sightings of the known hosts; every 1/share-th event changes something.

    The changes take turns: port 80 of a host closes (or opens again), a new host
    appears, a host's DNS name changes. Changed hosts are taken in order, so no
    host changes twice before every host has changed once."""

    def __init__(self, hosts: int, share: float, salt: str) -> None:
        self.hosts, self.salt = hosts, salt
        self.every = max(1, round(1 / share)) if share > 0 else 0
        self.rng = random.Random(6)
        self.port80 = [True] * hosts
        self.names = [0] * hosts
        self.turn = 0
        self.new = 0
        self.changes: list[tuple[str, float]] = []

    def event(self, i: int, now: datetime) -> Event:
        if self.every and i % self.every == self.every // 2:
            return self._change(i, now)
        h = self.rng.randrange(self.hosts)
        r = self.rng.random()
        if r < 0.45:
            return arp_seen(h, now, f"{self.salt}-{i}")
        if r < 0.9:
            return HostSeen(host_key=ip_of(h), observed_at=now, source="icmp", ip=ip_of(h),
                            evidence="echo-reply", rtt_ms=0.2, sweep_id=f"{self.salt}-{i}")
        return self._ports(h, now, i)

    def _ports(self, h: int, now: datetime, i: int) -> PortsProbed:
        return probed(h, now, [_PORT22, _PORT80] if self.port80[h] else [_PORT22], float(i))

    def _change(self, i: int, now: datetime) -> Event:
        kind = (i // self.every) % 3
        if kind == 1:
            self.new += 1
            h = 2_000_000 + self.new
            self.changes.append((mac_of(h), now.timestamp()))
            return arp_seen(h, now, f"{self.salt}-{i}")
        h = self.turn % self.hosts
        self.turn += 1
        self.changes.append((mac_of(h), now.timestamp()))
        if kind == 0:
            self.port80[h] = not self.port80[h]
            return self._ports(h, now, i)
        self.names[h] += 1
        return HostAnnotated(host_key=mac_of(h), observed_at=now, source="dns", ip=ip_of(h),
                             mac=mac_of(h), hostname=f"host-{h}-{self.names[h]}.lab.test")
