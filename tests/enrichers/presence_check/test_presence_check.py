"""presence_check: ARP on-link, ICMP then TCP off-link, scope refusal; then for real in the lab."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from enrichers.presence_check import Config, PresenceCheck
from lanscope.config import ScopeConfig
from lanscope.errors import UnusableEvent
from lanscope.net.interfaces import Interface, interfaces_async
from lanscope.net.rawsweep import Reply
from lanscope.net.scope import ScopeGuard
from producers.arp_sweep._io import arp_sweep_async
from producers.ping_sweep._io import icmp_sweep_async, tcp_connect
from schemas import HostCheckRequested, HostSeen, HostUnreachable
from tests.factories import T0, at

MAC = "dc:a6:32:00:00:02"
BRIDGE = Interface(name="br0", index=2, mac="02:00:00:00:00:01", mtu=1500, state="up", link_type="ether",
                   driver="bridge", addresses=[ipaddress.ip_interface("198.18.0.1/16")])


def request(ip: str = "198.18.0.2", mac: str | None = MAC, ports: list[int] | None = None,
            t: float = 0, now: bool = False) -> HostCheckRequested:
    when = datetime.now(UTC) if now else at(t)
    return HostCheckRequested(host_key=mac or ip, observed_at=when, source="host_state", ip=ip, mac=mac,
                              open_ports=ports or [], reason="missed 2 sweeps", id=f"req-{ip}-{t}")


class Wire:
    """Fake I/O: records what would be sent, answers as told."""

    def __init__(self, arp: dict[int, Reply] | None = None, icmp: dict[Any, Reply] | None = None,
                 tcp: dict[int, tuple[str, float]] | None = None) -> None:
        self.arp_replies, self.icmp_replies, self.tcp_replies = arp or {}, icmp or {}, tcp or {}
        self.sent: list[tuple[str, Any]] = []

    async def arp(self, interface: str, src_mac: str, src_ip: int, targets: list[int],
                  **options: Any) -> dict[int, Reply]:
        self.sent.append(("arp", (interface, targets, options)))
        return {t: r for t, r in self.arp_replies.items() if t in targets}

    async def icmp(self, targets: list[Any], **options: Any) -> dict[Any, Reply]:
        self.sent.append(("icmp", (targets, options)))
        return {t: r for t, r in self.icmp_replies.items() if t in targets}

    async def tcp(self, address: Any, port: int, timeout_ms: int) -> tuple[str, float] | None:
        self.sent.append(("tcp", (str(address), port)))
        return self.tcp_replies.get(port)

    def stage(self, scope: ScopeConfig | None = None, **config: Any) -> PresenceCheck:
        async def interfaces() -> list[Interface]:
            return [BRIDGE]

        guard = ScopeGuard(scope or ScopeConfig(allow=["198.19.0.0/24"]),
                           attached=lambda: [ipaddress.ip_network("198.18.0.0/16")])
        return PresenceCheck(Config(**config), arp=self.arp, icmp=self.icmp, tcp_connect=self.tcp,
                             interfaces=interfaces, guard=guard, clock=lambda: T0 + timedelta(seconds=1))


def ip_int(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip))


async def test_an_on_link_host_that_answers_arp_is_seen() -> None:
    wire = Wire(arp={ip_int("198.18.0.2"): Reply(rtt_ms=0.4, mac=MAC)})
    [seen] = await wire.stage().handle(request())
    assert isinstance(seen, HostSeen)
    assert (seen.source, seen.evidence, seen.mac, seen.ip, seen.alive, seen.interface) == (
        "presence_check", "arp-reply", MAC, "198.18.0.2", True, "br0")
    # To its last-known MAC, a few times, each given the whole timeout.
    [(kind, (interface, targets, options))] = wire.sent
    assert (kind, interface, targets) == ("arp", "br0", [ip_int("198.18.0.2")])
    assert options == {"retries": 2, "timeout_ms": 1000, "quiet_ms": 1000,
                       "unicast": {ip_int("198.18.0.2"): MAC}}


async def test_a_silent_on_link_host_is_unreachable_naming_what_was_tried() -> None:
    wire = Wire()
    [out] = await wire.stage().handle(request(ports=[22]))
    assert isinstance(out, HostUnreachable)
    assert (out.host_key, out.request_id, out.ip, out.mac) == (MAC, "req-198.18.0.2-0", "198.18.0.2", MAC)
    assert out.tried == [f"arp 198.18.0.2 on br0 to {MAC} x3"]
    assert [kind for kind, _ in wire.sent] == ["arp"]          # ARP is the answer on-link


async def test_an_off_link_host_is_tried_by_echo_then_its_open_ports() -> None:
    wire = Wire(tcp={80: ("syn-ack", 1.5)})
    [seen] = await wire.stage().handle(request("198.19.0.10", None, ports=[22, 80, 443]))
    assert isinstance(seen, HostSeen) and seen.evidence == "syn-ack:80" and seen.host_key == "198.19.0.10"
    assert [k for k, _ in wire.sent] == ["icmp", "tcp", "tcp"]
    wire = Wire()
    [out] = await wire.stage(tcp_ports=2).handle(request("198.19.0.11", None, ports=[22, 80, 443]))
    assert isinstance(out, HostUnreachable)
    assert out.tried == ["icmp echo 198.19.0.11 x3", "tcp connect 198.19.0.11 port 22,80"]


async def test_an_echo_reply_off_link_is_enough() -> None:
    address = ipaddress.ip_address("198.19.0.11")
    wire = Wire(icmp={address: Reply(rtt_ms=0.8, ttl=63)})
    [seen] = await wire.stage().handle(request("198.19.0.11", None, ports=[22]))
    assert isinstance(seen, HostSeen) and (seen.evidence, seen.ttl) == ("echo-reply", 63)
    assert [k for k, _ in wire.sent] == ["icmp"]


async def test_an_address_out_of_scope_is_dead_lettered_and_nothing_is_sent() -> None:
    wire = Wire()
    with pytest.raises(UnusableEvent, match=r"presence check of 198.51.100.7: 198.51.100.7 is "):
        await wire.stage().handle(request("198.51.100.7", None, ports=[22]))
    with pytest.raises(UnusableEvent, match="out of scope"):
        await wire.stage(ScopeConfig(attached=False)).handle(request())
    assert wire.sent == []


async def test_a_stale_request_is_dropped() -> None:
    wire = Wire()
    assert await wire.stage(max_age_secs=60).handle(request(t=-120)) == []
    assert wire.sent == []


async def test_an_answer_from_another_mac_does_not_vouch_for_the_host() -> None:
    other = "02:00:00:00:00:99"
    wire = Wire(arp={ip_int("198.18.0.2"): Reply(rtt_ms=0.4, mac=other)})
    seen, unreachable = await wire.stage().handle(request())
    assert isinstance(seen, HostSeen) and seen.mac == other and seen.host_key == other
    assert isinstance(unreachable, HostUnreachable) and unreachable.host_key == MAC


# ------------------------------------------------------------------------------ the lab


def lab_stage(lab: Any) -> PresenceCheck:
    return PresenceCheck(Config(tries=2, timeout_ms=300, tcp_timeout_ms=500), arp=arp_sweep_async,
                         icmp=icmp_sweep_async, tcp_connect=tcp_connect, interfaces=interfaces_async,
                         guard=ScopeGuard(ScopeConfig(allow=[lab.SUBNET, lab.OFFLINK])))


@pytest.mark.lab
async def test_the_lab_hosts_answer_and_an_unplugged_one_does_not(lab: Any) -> None:
    stage = lab_stage(lab)
    f02, off1, off2 = lab.host("f02"), lab.host("off1"), lab.host("off2")
    [seen] = await stage.handle(request(f02.ip, f02.mac, now=True))
    assert isinstance(seen, HostSeen) and (seen.evidence, seen.mac) == ("arp-reply", f02.mac)
    [seen] = await stage.handle(request(off2.ip, None, now=True))
    assert isinstance(seen, HostSeen) and seen.evidence == "echo-reply" and seen.ttl == 63
    [seen] = await stage.handle(request(off1.ip, None, ports=[80], now=True))   # drops ICMP, serves 80
    assert isinstance(seen, HostSeen) and seen.evidence == "syn-ack:80"
    lab.set_link("f02", False)
    try:
        [out] = await stage.handle(request(f02.ip, f02.mac, now=True))
    finally:
        lab.set_link("f02", True)
    assert isinstance(out, HostUnreachable) and out.tried == [f"arp {f02.ip} on br0 to {f02.mac} x2"]
    assert 500 <= out.duration_ms < 3000


@pytest.mark.lab
async def test_the_real_scope_check_refuses_an_address_outside_the_lab(lab: Any) -> None:
    sent: list[Any] = []

    async def never(*args: Any, **kwargs: Any) -> Any:
        sent.append(args)
        raise AssertionError("a probe was sent")

    # The lab's segments are attached, so allowed: not with attached off and nothing allowed.
    guard = ScopeGuard(ScopeConfig(attached=False))
    stage = PresenceCheck(Config(), arp=never, icmp=never, tcp_connect=never, interfaces=interfaces_async,
                          guard=guard)
    with pytest.raises(UnusableEvent):
        await stage.handle(request(lab.host("f02").ip, None, now=True))
    assert sent == [] and guard.refusal("10.1.2.3") is not None
