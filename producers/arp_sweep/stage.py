"""ARP sweep: who answers ARP on each attached IPv4 subnet.

Every target address that is on-link for an up Ethernet-like interface gets a
broadcast ARP request (network and broadcast addresses, and the interface's
own address, skipped); each reply becomes a HostSeen(source="arp",
evidence="arp-reply") with the MAC and the round-trip time. One SweepCompleted
per sweep says which addresses were asked (``covered``: exactly those), so the
host_state sink can count missed sweeps.
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated

import msgspec

from lanscope.net.coverage import covered_cidrs
from lanscope.net.interfaces import Interface, InterfaceList, arp_capable
from lanscope.net.rawsweep import Reply
from lanscope.net.targets import Targets, parse_targets
from lanscope.runtime.stage import StageContext
from lanscope.settings import NonNegativeInt, PositiveFloat, PositiveInt
from schemas import Event, HostSeen, SweepCompleted, host_key

SOURCE = "arp"

# (interface, src_mac, src_ip, targets, *, retries, timeout_ms, quiet_ms, packets_per_sec, progress)
ArpScan = Callable[..., Awaitable[dict[int, Reply]]]


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """producers.arp_sweep in config.yaml (documented in config.sample.yaml)."""

    enabled: bool = True
    interval_secs: PositiveFloat = 60.0
    interfaces: list[str] = []           # empty: every up interface with an IPv4 address
    timeout_ms: PositiveInt = 800        # the longest wait for replies after the last request
    quiet_ms: NonNegativeInt = 50        # stop earlier once replies have paused this long
    retries: NonNegativeInt = 1          # re-sends to the targets that stayed silent ...
    retry_max_silent: NonNegativeInt = 4096  # ... when at most this many, or the first round lost frames
    packets_per_sec: NonNegativeInt = 0  # 0: as fast as the interface takes them
    # With no targets, attached networks wider than this are not swept.
    max_prefix_bits: Annotated[int, msgspec.Meta(ge=0, le=32)] = 16


def new_sweep_id(source: str, now: datetime) -> str:
    return f"{source}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


class ArpSweep:
    """Producer: ARP requests to every on-link target, replies as HostSeen."""

    def __init__(self, config: Config, *, scan: ArpScan, interfaces: InterfaceList,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 targets: Targets | None = None, exclude: Sequence[str] = (),
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.config = config
        self.interval_secs = config.interval_secs
        self._exclude = list(exclude)    # scope.exclude: never swept
        self._scan = scan
        self._interfaces = interfaces
        self._clock = clock
        self._progress = progress
        self._targets = targets          # None: every attached private IPv4 subnet

    def _plan(self, found: list[Interface]) -> list[tuple[Interface, ipaddress.IPv4Interface, Targets]]:
        """(interface, own address, on-link targets) for every interface that has some."""
        plan = []
        for interface in found:
            if not arp_capable(interface):
                continue
            if self.config.interfaces and interface.name not in self.config.interfaces:
                continue
            for own in interface.ipv4:
                network = own.network
                if network.prefixlen >= 31:
                    continue
                if self._targets is None:
                    if network.prefixlen < self.config.max_prefix_bits or network.is_global \
                            or network.is_link_local:
                        continue
                    on_link = parse_targets([str(network)], exclude=self._exclude)
                else:
                    on_link = self._targets.intersect(parse_targets([str(network)]))
                if on_link:
                    plan.append((interface, own, on_link))
        return plan

    async def sweep(self) -> list[Event]:
        started = self._clock()
        start = time.monotonic()
        sweep_id = new_sweep_id(SOURCE, started)
        events: list[Event] = []
        swept: list[str] = []
        sent: list[int] = []
        plan = self._plan(await self._interfaces())
        total = sum(len(t) for _, _, t in plan)
        done = 0
        for interface, own, on_link in plan:
            # Our own address never answers our request: asking it would count it missed.
            addresses: Sequence[int] = [ip for ip in on_link.sendable_ints4([own.network])
                                        if ip != int(own.ip)]
            sent += addresses
            offset = done

            def progress(n: int, of: int, offset: int = offset, count: int = len(addresses)) -> None:
                if self._progress and of:
                    self._progress(offset + n * count // of, total)

            replies = await self._scan(interface.name, interface.mac, int(own.ip), addresses,
                                       retries=self.config.retries, timeout_ms=self.config.timeout_ms,
                                       quiet_ms=self.config.quiet_ms,
                                       packets_per_sec=self.config.packets_per_sec,
                                       retry_max_silent=self.config.retry_max_silent,
                                       progress=progress)
            done += len(on_link)
            seen_at = self._clock()
            for ip in sorted(replies):
                reply = replies[ip]
                text = str(ipaddress.IPv4Address(ip))
                events.append(HostSeen(host_key=host_key(reply.mac, text), observed_at=seen_at, source=SOURCE,
                                       ip=text, mac=reply.mac, evidence="arp-reply",
                                       interface=interface.name, rtt_ms=round(reply.rtt_ms, 3),
                                       sweep_id=sweep_id))
            swept.extend(on_link.specs if self._targets is not None else [str(own.network)])
        hosts = len(events)
        events.append(SweepCompleted(host_key=sweep_id, observed_at=self._clock(), source=SOURCE,
                                     targets=sorted(set(swept))[:1000], sweep_id=sweep_id,
                                     hosts_found=hosts, covered=covered_cidrs(sent),
                                     duration_ms=round((time.monotonic() - start) * 1000, 1)))
        return events


def build(config: Config, ctx: StageContext) -> ArpSweep:
    """The sweep of the command's targets, else `targets:`, else the attached private subnets."""
    from lanscope.net.interfaces import interfaces_async

    from ._io import arp_sweep_async

    return ArpSweep(config, scan=arp_sweep_async, interfaces=interfaces_async,
                    targets=ctx.sweep_targets(), exclude=ctx.scope.exclude, progress=ctx.progress)
