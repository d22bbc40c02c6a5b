"""Factories for events, so tests state only the fields they care about."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lanscope.net.scope import ScopeGuard
from lanscope.settings import ScopeConfig
from schemas import (
    HostAnnotated,
    HostCheckRequested,
    HostSeen,
    HostUnreachable,
    PortResult,
    PortsProbed,
    PortState,
    Protocol,
    SweepCompleted,
    host_key,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
LAB_RANGES = ("198.18.0.0/15", "fd00:1a5::/64")


def scope_guard(*allow: str) -> ScopeGuard:
    """A stage's scope guard that allows ``allow`` (default: the lab's ranges) and nothing
    attached: what unit tests of packet-sending stages are built with."""
    return ScopeGuard(ScopeConfig(allow=list(allow or LAB_RANGES)), attached=list)


def at(seconds: float) -> datetime:
    """A timestamp ``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def host_seen(ip: str = "198.18.0.10", mac: str | None = "02:00:00:00:00:10", *,
              source: str = "arp", t: float = 0, **fields: Any) -> HostSeen:
    fields.setdefault("evidence", {"arp": "arp-reply", "icmp": "echo-reply"}.get(source, source))
    return HostSeen(host_key=host_key(mac, ip), observed_at=at(t), source=source, ip=ip, mac=mac,
                    **fields)


def port(port: int, state: PortState | str = PortState.OPEN, protocol: str = "tcp",
         **fields: Any) -> PortResult:
    return PortResult(protocol=Protocol(protocol), port=port, state=PortState(state), **fields)


def ports_probed(ip: str = "198.18.0.10", mac: str | None = "02:00:00:00:00:10",
                 ports: list[PortResult] | None = None, *, t: float = 0, **fields: Any) -> PortsProbed:
    return PortsProbed(host_key=host_key(mac, ip), observed_at=at(t), source="port_probe", ip=ip,
                       mac=mac, ports=ports if ports is not None else [port(22, service="ssh")],
                       **fields)


def host_annotated(ip: str = "198.18.0.10", mac: str | None = "02:00:00:00:00:10", *,
                   source: str = "dns", t: float = 0, **fields: Any) -> HostAnnotated:
    return HostAnnotated(host_key=host_key(mac, ip), observed_at=at(t), source=source, ip=ip,
                         mac=mac, **fields)


def sweep_completed(t: float, covered: list[str] | None = None, *, source: str = "arp",
                    sweep_id: str | None = None, duration_ms: float = 1000) -> SweepCompleted:
    """A sweep ending at ``t`` that took ``duration_ms``; covers 198.18.0.0/24 by default."""
    return SweepCompleted(host_key="sweep", observed_at=at(t), source=source, targets=["198.18.0.0/24"],
                          covered=["198.18.0.0/24"] if covered is None else covered,
                          sweep_id=sweep_id or f"{source}-{t}", duration_ms=duration_ms)


def host_unreachable(request: HostCheckRequested, *, t: float,
                     tried: list[str] | None = None) -> HostUnreachable:
    """presence_check's answer to ``request``: nothing answered what it tried."""
    return HostUnreachable(host_key=request.host_key, observed_at=at(t), source="presence_check",
                           ip=request.ip, mac=request.mac, request_id=request.id, started_at=at(t - 1),
                           tried=tried if tried is not None else [f"arp {request.ip} x3"])
