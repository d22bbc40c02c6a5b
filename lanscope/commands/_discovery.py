"""Host discovery for one-shot commands: which targets are up, composed from the producer stages.

``discover_hosts`` ARP-sweeps the on-link IPv4 targets (nothing beats ARP on a
LAN: a host cannot hide from it), ICMP-pings the ARP responders for their TTL
and everything off-link (IPv6 included), and TCP-pings the off-link hosts
that stayed silent. Without raw-socket rights (no root/CAP_NET_RAW) ARP is
skipped and on-link hosts are ICMP/TCP-pinged instead. Used by ``lanscope
ping``, ``lanscope scan`` and ``lanscope discover``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime

from lanscope.config import Config
from lanscope.net.coverage import covered_cidrs, read_coverage
from lanscope.net.interfaces import Interface, interfaces_async
from lanscope.net.targets import IPAddress, Targets, parse_targets
from lanscope.output import warn
from producers import arp_sweep, ping_sweep
from producers.arp_sweep.stage import new_sweep_id
from schemas import HostSeen, SweepCompleted, host_key

Progress = Callable[[int, int], None]


def _arp_networks(found: list[Interface]) -> list[str]:
    return [str(a.network) for i in found if i.is_up and i.link_type == "ether" and i.mac
            for a in i.ipv4 if a.network.prefixlen < 31]


def _merge(arp: HostSeen | None, ping: HostSeen | None) -> HostSeen:
    """One sighting per host: ARP's MAC and RTT, the echo reply's TTL."""
    if arp is None:
        assert ping is not None
        return ping
    if ping is None:
        return arp
    return HostSeen(host_key=host_key(arp.mac, arp.ip), observed_at=arp.observed_at, source=arp.source,
                    ip=arp.ip, mac=arp.mac, evidence=f"{arp.evidence}+{ping.evidence}",
                    interface=arp.interface, rtt_ms=arp.rtt_ms, ttl=ping.ttl, sweep_id=arp.sweep_id)


async def discover_hosts(targets: Targets, config: Config, *, progress: Progress | None = None,
                         arp: bool = True) -> list[HostSeen]:
    """The live hosts among ``targets`` (already scope-checked), one HostSeen each, by address."""
    hosts, _ = await discover_sweep(targets, config, progress=progress, arp=arp)
    return hosts


async def discover_sweep(targets: Targets, config: Config, *, progress: Progress | None = None,
                         arp: bool = True) -> tuple[list[HostSeen], list[str]]:
    """discover_hosts, and what it covered: the addresses it sent a probe to, as
    SweepCompleted.covered (ARP's, and every address pinged)."""
    found = await interfaces_async()
    ctx = config.stage_context(progress=progress, sweep=targets)
    on_link = parse_targets(_arp_networks(found)) if arp else parse_targets([])
    arp_seen: dict[str, HostSeen] = {}
    arp_covered: list[str] = []
    if arp and targets.intersect(on_link):
        try:
            arp_stage = arp_sweep.build(config.producers.arp_sweep, ctx)
            for event in await arp_stage.sweep():
                if isinstance(event, HostSeen) and event.ip:
                    arp_seen[event.ip] = event
                elif isinstance(event, SweepCompleted):
                    arp_covered = event.covered
        except PermissionError:
            warn("ARP needs root or CAP_NET_RAW; falling back to ICMP and TCP ping on the LAN")
            on_link = parse_targets([])
    attached = [a.network for i in found if i.is_up for a in i.addresses]
    rest = targets.minus(on_link)
    addresses: list[IPAddress] = list(rest.sendable(attached))
    responders = [ipaddress.ip_address(ip) for ip in arp_seen]
    ping_stage = ping_sweep.build(config.producers.ping_sweep, ctx)
    # One sweep id for every sighting of this discovery, so host_state knows which hosts
    # the discovery's SweepCompleted saw (only they count as missed by a later one).
    sweep_id = (next(iter(arp_seen.values())).sweep_id if arp_seen
                else new_sweep_id("discover", datetime.now(UTC)))
    # One ICMP round for both: TTLs of the ARP responders, and the off-link/IPv6 targets.
    pinged = await ping_stage.probe(responders + addresses, sweep_id=sweep_id, tcp=False)
    ping_seen = {e.ip: e for e in pinged if e.ip}
    silent = [a for a in addresses if str(a) not in ping_seen]
    if silent and len(silent) <= ping_stage.config.tcp_max_hosts:
        for event in await ping_stage.tcp_ping(silent, sweep_id):
            if event.ip:
                ping_seen[event.ip] = event
    hosts = [_merge(arp_seen.get(ip), ping_seen.get(ip)) for ip in {*arp_seen, *ping_seen}]
    covered = read_coverage([*arp_covered, *covered_cidrs(addresses)]).cidrs()
    return sorted(hosts, key=lambda h: _sort_key(h.ip)), covered


def _sort_key(ip: str | None) -> tuple[int, int]:
    address = ipaddress.ip_address(ip or "0.0.0.0")
    return address.version, int(address)


async def reverse_names(ips: list[str], config: Config, *, concurrency: int = 64) -> dict[str, str]:
    """PTR names for ``ips`` through the dns_names stage (off when it is disabled), bounded
    concurrency."""
    import asyncio

    from lanscope.runtime.stage import StageDisabled
    from lanscope.runtime.topology import STAGES

    try:
        stage = STAGES["dns_names"].instantiate(config.enrichers.dns_names, config.stage_context())
    except StageDisabled:
        return {}
    limit = asyncio.Semaphore(concurrency)

    async def one(ip: str) -> tuple[str, str | None]:
        async with limit:
            name, _fresh = await stage.name_of(ip)
            return ip, name

    return {ip: name for ip, name in await asyncio.gather(*(one(ip) for ip in ips)) if name}


async def vendors(macs: list[str]) -> dict[str, str]:
    """Vendor (or "(randomised)") per MAC through the mac_vendor stage's lookup."""
    from enrichers import mac_vendor

    defaults = Config()
    stage = mac_vendor.build(defaults.enrichers.mac_vendor, defaults.stage_context())
    out: dict[str, str] = {}
    for mac in set(macs):
        vendor, randomized = await stage.vendor_of(mac)
        out[mac] = "(randomised)" if randomized else (vendor or "")
    return out
