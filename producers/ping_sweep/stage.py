"""Ping sweep: ICMP echo to every target, TCP ping for the ones that stay silent.

Many echo requests are in flight at once (one raw socket, one receiver
thread); every reply becomes HostSeen(source="icmp", evidence="echo-reply")
with the round-trip time and the reply TTL. Hosts that drop ICMP are then
TCP-pinged like ``nmap -PS``: a SYN-ACK or a RST on any of ``tcp_ports``
counts as alive (HostSeen(source="tcp_ping", evidence="syn-ack:80")). TCP
ping is skipped when more than ``tcp_max_hosts`` targets are silent (a sparse
/16 would mean 300,000 connects; ARP covers on-link hosts anyway). The
SweepCompleted of a sweep covers every address an echo request went to but the
machine's own: they answer (the kernel replies to itself), yet a host whose
firewall drops echo to itself must not count as missing itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated

import msgspec

from lanscope.net.coverage import covered_cidrs
from lanscope.net.interfaces import InterfaceList
from lanscope.net.rawsweep import Reply
from lanscope.net.targets import IPAddress, Targets, parse_targets
from lanscope.runtime.stage import StageContext
from lanscope.settings import NonNegativeInt, Port, PositiveFloat, PositiveInt
from producers.arp_sweep.stage import new_sweep_id
from schemas import Event, HostSeen, SweepCompleted, host_key

IcmpScan = Callable[..., Awaitable[dict[IPAddress, Reply]]]
TcpConnect = Callable[[IPAddress, int, int], Awaitable[tuple[str, float] | None]]


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """producers.ping_sweep in config.yaml (documented in config.sample.yaml)."""

    enabled: bool = True
    interval_secs: PositiveFloat = 300.0
    timeout_ms: PositiveInt = 1000       # the longest wait for echo replies after the last request
    quiet_ms: NonNegativeInt = 100       # stop earlier once replies have paused this long
    retries: NonNegativeInt = 1
    packets_per_sec: NonNegativeInt = 0  # 0: unpaced
    tcp_ports: list[Port] = msgspec.field(default_factory=lambda: [22, 80, 443, 445, 3389])  # []: none
    tcp_timeout_ms: PositiveInt = 1000
    tcp_concurrency: PositiveInt = 512   # connects in flight
    tcp_max_hosts: NonNegativeInt = 1024  # silent hosts TCP-pinged at most (0: never)
    # With no targets, attached networks wider than this are not swept.
    max_prefix_bits: Annotated[int, msgspec.Meta(ge=0, le=32)] = 16


class PingSweep:
    """Producer: ICMP echo sweep plus TCP ping for the silent."""

    def __init__(self, config: Config, *, icmp: IcmpScan, tcp_connect: TcpConnect,
                 interfaces: InterfaceList, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 targets: Targets | None = None, exclude: Sequence[str] = (),
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.config = config
        self.interval_secs = config.interval_secs
        self._exclude = list(exclude)    # scope.exclude: never swept
        self._icmp = icmp
        self._tcp_connect = tcp_connect
        self._interfaces = interfaces
        self._clock = clock
        self._progress = progress
        self._targets = targets          # None: every attached private IPv4 subnet

    async def _resolve_targets(self) -> tuple[Targets, list[ipaddress.IPv4Network | ipaddress.IPv6Network],
                                              set[IPAddress]]:
        """(targets, the attached networks, the machine's own addresses)."""
        found = await self._interfaces()
        attached = [a.network for i in found if i.is_up for a in i.addresses]
        own = {a.ip for i in found for a in i.addresses}
        if self._targets is not None:
            return self._targets, attached, own
        networks = [str(a.network) for i in found if i.is_up and i.link_type != "loopback"
                    for a in i.ipv4 if a.network.prefixlen >= self.config.max_prefix_bits
                    and not a.network.is_global and not a.network.is_link_local]
        return parse_targets(networks, exclude=self._exclude), attached, own

    async def sweep(self) -> list[Event]:
        started = self._clock()
        start = time.monotonic()
        sweep_id = new_sweep_id("icmp", started)
        targets, attached, own = await self._resolve_targets()
        addresses = list(targets.sendable(attached))
        events: list[Event] = list(await self.probe(addresses, sweep_id=sweep_id))
        hosts = len(events)
        events.append(SweepCompleted(host_key=sweep_id, observed_at=self._clock(), source="icmp",
                                     targets=list(targets.specs)[:1000], sweep_id=sweep_id,
                                     hosts_found=hosts,
                                     covered=covered_cidrs(a for a in addresses if a not in own),
                                     duration_ms=round((time.monotonic() - start) * 1000, 1)))
        return events

    async def probe(self, addresses: Sequence[IPAddress], *, sweep_id: str | None = None,
                    tcp: bool = True) -> list[HostSeen]:
        """Echo-request ``addresses``; TCP-ping the silent ones (when ``tcp`` and few enough)."""
        replies = await self._icmp(addresses, retries=self.config.retries,
                                   timeout_ms=self.config.timeout_ms, quiet_ms=self.config.quiet_ms,
                                   packets_per_sec=self.config.packets_per_sec,
                                   progress=self._progress)
        seen_at = self._clock()
        events: list[HostSeen] = []
        for address in sorted(replies, key=lambda a: (a.version, a)):
            reply = replies[address]
            events.append(HostSeen(host_key=host_key(None, str(address)), observed_at=seen_at,
                                   source="icmp", ip=str(address), evidence="echo-reply",
                                   rtt_ms=round(reply.rtt_ms, 3), ttl=reply.ttl, sweep_id=sweep_id))
        silent = [a for a in addresses if a not in replies]
        if tcp and self.config.tcp_ports and 0 < len(silent) <= self.config.tcp_max_hosts:
            events += await self.tcp_ping(silent, sweep_id)
        return events

    async def tcp_ping(self, addresses: Sequence[IPAddress],
                       sweep_id: str | None = None) -> list[HostSeen]:
        """TCP-ping each address on the configured ports; the first answer per host wins."""
        limit = asyncio.Semaphore(self.config.tcp_concurrency)

        async def probe(address: IPAddress, port: int) -> tuple[int, tuple[str, float] | None]:
            async with limit:
                return port, await self._tcp_connect(address, port, self.config.tcp_timeout_ms)

        async def host(address: IPAddress) -> HostSeen | None:
            tasks = [asyncio.ensure_future(probe(address, p)) for p in self.config.tcp_ports]
            try:
                for next_done in asyncio.as_completed(tasks):
                    port, answer = await next_done
                    if answer is None:
                        continue
                    reason, rtt = answer
                    return HostSeen(host_key=host_key(None, str(address)), observed_at=self._clock(),
                                    source="tcp_ping", ip=str(address), evidence=f"{reason}:{port}",
                                    rtt_ms=round(rtt, 3), sweep_id=sweep_id)
                return None
            finally:
                for task in tasks:
                    task.cancel()

        results = await asyncio.gather(*(host(a) for a in addresses))
        return [r for r in results if r is not None]


def build(config: Config, ctx: StageContext) -> PingSweep:
    """The sweep of the command's targets, else `targets:`, else the attached private subnets."""
    from lanscope.net.interfaces import interfaces_async

    from ._io import icmp_sweep_async, tcp_connect

    return PingSweep(config, icmp=icmp_sweep_async, tcp_connect=tcp_connect,
                     interfaces=interfaces_async, targets=ctx.sweep_targets(),
                     exclude=ctx.scope.exclude, progress=ctx.progress)
