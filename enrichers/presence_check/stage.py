"""presence_check: a direct check of a host before host_state says it is gone.

host_state (a sink: it sends no packets) asks with a ``HostCheckRequested`` when a
host missed enough sweeps. This enricher tries the host itself, a few times:

- on-link IPv4 (an up Ethernet interface holds its subnet): ARP requests sent to
  the host's last-known MAC (unicast, as the kernel re-checks a STALE neighbour;
  broadcast when no MAC is known), through the ARP sweep's raw-socket I/O;
- otherwise (behind a router, or IPv6): ICMP echo, then a TCP connect to each
  last-known open port (a SYN-ACK or a RST is an answer).

An answer is a ``HostSeen`` (source ``presence_check``, alive), which host_state
takes as evidence; silence is a ``HostUnreachable`` naming what was tried, on
which host_state says gone. The address must pass the scope check every stage
applies to an address an event names (lanscope.net.scope.ScopeGuard): an
out-of-scope request is dead-lettered with the reason, and nothing is sent. A request
older than ``max_age_secs`` (a replay of the stream) is dropped: checking a host now
says nothing about then.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from enrichers._asking import act_on_request
from lanscope.net.interfaces import Interface, InterfaceList, arp_capable
from lanscope.net.rawsweep import Reply
from lanscope.net.scope import Guard
from lanscope.net.targets import IPAddress
from lanscope.runtime.stage import StageContext
from lanscope.settings import NonNegativeInt, PositiveFloat, PositiveInt
from schemas import Event, HostCheckRequested, HostSeen, HostUnreachable, host_key

log = logging.getLogger(__name__)

SOURCE = "presence_check"

# (interface, src_mac, src_ip, targets, *, retries, timeout_ms, quiet_ms, unicast) -> {ip: Reply}
ArpScan = Callable[..., Awaitable[dict[int, Reply]]]
# (targets, *, retries, timeout_ms, quiet_ms) -> {address: Reply}
IcmpScan = Callable[..., Awaitable[dict[IPAddress, Reply]]]
TcpConnect = Callable[[IPAddress, int, int], Awaitable[tuple[str, float] | None]]


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """enrichers.presence_check in config.yaml (documented in config.sample.yaml)."""

    enabled: bool = True
    tries: PositiveInt = 3               # ARP or echo requests per check, one per timeout
    timeout_ms: PositiveInt = 1000       # the wait for an answer to each
    tcp_ports: NonNegativeInt = 4        # at most this many last-known open ports tried (off-link)
    tcp_timeout_ms: PositiveInt = 1000   # per TCP connect
    max_age_secs: PositiveFloat = 600.0  # older requests are dropped (a replay of the stream)
    concurrency: PositiveInt = 16        # checks at once per process


class PresenceCheck:
    """Enricher: HostCheckRequested -> HostSeen (it answered) or HostUnreachable."""

    def __init__(self, config: Config, *, arp: ArpScan, icmp: IcmpScan, tcp_connect: TcpConnect,
                 interfaces: InterfaceList, guard: Guard,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self._arp = arp
        self._icmp = icmp
        self._tcp_connect = tcp_connect
        self._interfaces = interfaces
        self._guard = guard
        self._clock = clock

    async def handle(self, event: Event) -> list[Event]:
        if not isinstance(event, HostCheckRequested):
            return []
        if not act_on_request(self._guard, event.ip, observed_at=event.observed_at, now=self._clock(),
                              max_age_secs=self.config.max_age_secs, log=log,
                              stale="presence_check: %s: request %.0f s old, dropped",
                              stale_args=(event.ip,), refused=f"presence check of {event.host_key}"):
            return []
        address = ipaddress.ip_address(event.ip)
        link = None
        if isinstance(address, ipaddress.IPv4Address):     # ARP is IPv4's: only then read the interfaces
            link = _on_link(await self._interfaces(), address)
        started = self._clock()
        start = time.monotonic()
        if link is not None:
            seen, tried = await self._by_arp(event, address, *link)
        else:
            seen, tried = await self._by_icmp_and_tcp(event, address)
        answered = [s for s in seen if event.mac is None or s.mac in (None, event.mac)]
        if answered:
            return list(seen)
        return [*seen, HostUnreachable(
            host_key=event.host_key, observed_at=self._clock(), source=SOURCE, ip=event.ip, mac=event.mac,
            request_id=event.id, tried=tried, started_at=started,
            duration_ms=round((time.monotonic() - start) * 1000, 1))]

    async def _by_arp(self, event: HostCheckRequested, address: IPAddress, interface: Interface,
                      own: ipaddress.IPv4Interface) -> tuple[list[HostSeen], list[str]]:
        target = int(address)
        c = self.config
        assert interface.mac is not None
        replies = await self._arp(interface.name, interface.mac, int(own.ip), [target],
                                  retries=c.tries - 1, timeout_ms=c.timeout_ms, quiet_ms=c.timeout_ms,
                                  unicast={target: event.mac} if event.mac else None)
        tried = [f"arp {event.ip} on {interface.name} to {event.mac or 'broadcast'} x{c.tries}"]
        reply = replies.get(target)
        if reply is None:
            return [], tried
        return [self._seen(event, "arp-reply", reply, mac=reply.mac, interface=interface.name)], tried

    async def _by_icmp_and_tcp(self, event: HostCheckRequested,
                               address: IPAddress) -> tuple[list[HostSeen], list[str]]:
        c = self.config
        replies = await self._icmp([address], retries=c.tries - 1, timeout_ms=c.timeout_ms,
                                   quiet_ms=c.timeout_ms)
        tried = [f"icmp echo {event.ip} x{c.tries}"]
        if address in replies:
            return [self._seen(event, "echo-reply", replies[address], ttl=replies[address].ttl)], tried
        ports = event.open_ports[:c.tcp_ports]
        if ports:
            tried.append(f"tcp connect {event.ip} port {','.join(map(str, ports))}")
        for port in ports:
            answer = await self._tcp_connect(address, port, c.tcp_timeout_ms)
            if answer is not None:
                reason, rtt = answer
                return [self._seen(event, f"{reason}:{port}", Reply(rtt_ms=rtt))], tried
        return [], tried

    def _seen(self, event: HostCheckRequested, evidence: str, reply: Reply, **fields: Any) -> HostSeen:
        mac = fields.pop("mac", event.mac)
        return HostSeen(host_key=host_key(mac, event.ip), observed_at=self._clock(), source=SOURCE,
                        ip=event.ip, mac=mac, evidence=evidence, rtt_ms=round(reply.rtt_ms, 3), **fields)


def _on_link(found: list[Interface],
             address: ipaddress.IPv4Address) -> tuple[Interface, ipaddress.IPv4Interface] | None:
    """The up Ethernet interface and own address whose IPv4 subnet holds ``address``."""
    for interface in found:
        if not arp_capable(interface):
            continue
        for own in interface.ipv4:
            if address in own.network and address != own.ip:
                return interface, own
    return None


def build(config: Config, ctx: StageContext) -> PresenceCheck:
    """Checks through the sweeps' own I/O, every address through the scope check."""
    from lanscope.net.interfaces import interfaces_async
    from producers.arp_sweep._io import arp_sweep_async
    from producers.ping_sweep._io import icmp_sweep_async, tcp_connect

    return PresenceCheck(config, arp=arp_sweep_async, icmp=icmp_sweep_async, tcp_connect=tcp_connect,
                         interfaces=interfaces_async, guard=ctx.scope_guard())
