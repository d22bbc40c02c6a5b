"""ARP sweep: every live on-link lab host with its MAC; the down address never; plan rules."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import pytest

from lanscope.net.coverage import covered_cidrs, read_coverage
from lanscope.net.interfaces import Interface, interfaces_async
from lanscope.net.rawsweep import Reply
from lanscope.net.targets import parse_targets
from producers.arp_sweep import ArpSweep, Config
from producers.arp_sweep._io import arp_sweep_async
from schemas import HostSeen, SweepCompleted
from tests.factories import T0


@pytest.mark.lab
async def test_finds_every_live_host_with_its_mac(lab: Any) -> None:
    stage = ArpSweep(Config(), scan=arp_sweep_async, interfaces=interfaces_async,
                     targets=parse_targets([lab.LIVE_24, lab.DOWN_IP]))
    events = await stage.sweep()
    seen = {e.ip: e for e in events if isinstance(e, HostSeen)}
    expected = {h.ip: h.mac for h in lab.live_hosts(lab.LIVE_24) if h.on_link}
    assert {ip: e.mac for ip, e in seen.items()} == expected
    assert lab.DOWN_IP not in seen
    noicmp = seen[lab.host("noicmp").ip]                # drops ICMP, cannot hide from ARP
    assert noicmp.evidence == "arp-reply" and noicmp.interface == "br0"
    assert all(e.rtt_ms is not None and 0 <= e.rtt_ms < 1000 for e in seen.values())
    assert all(e.source == "arp" and e.host_key == e.mac for e in seen.values())
    done = [e for e in events if isinstance(e, SweepCompleted)]
    assert len(done) == 1 and done[0].hosts_found == len(seen)
    assert {e.sweep_id for e in seen.values()} == {done[0].sweep_id}
    # Covered: every address asked, the silent one too; not the scanner's own, not .0/.255.
    asked = [f"198.18.0.{i}" for i in range(2, 255)]
    assert done[0].covered == covered_cidrs(ipaddress.ip_address(a) for a in asked)
    assert lab.DOWN_IP in read_coverage(done[0].covered)


@pytest.mark.lab
async def test_sparse_slash_16_complete_recall(lab: Any) -> None:
    stage = ArpSweep(Config(), scan=arp_sweep_async, interfaces=interfaces_async,
                     targets=parse_targets([lab.SUBNET]))
    seen = {e.ip: e.mac for e in await stage.sweep() if isinstance(e, HostSeen)}
    assert seen == {h.ip: h.mac for h in lab.live_hosts(lab.SUBNET) if h.on_link}


# -- the plan, with a recording scan callable --------------------------------

def _ether(name: str, address: str, mac: str = "02:00:00:00:00:01", state: str = "up") -> Interface:
    return Interface(name=name, index=2, mac=mac, mtu=1500, state=state, link_type="ether", driver="veth",
                     addresses=[ipaddress.ip_interface(address)])


class Recorder:
    def __init__(self, answers: dict[int, Reply]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, list[str]]] = []

    async def __call__(self, interface: str, src_mac: str, src_ip: int, targets: Sequence[int],
                       **options: Any) -> dict[int, Reply]:
        self.calls.append((interface, [str(ipaddress.IPv4Address(t)) for t in targets]))
        return {t: r for t, r in self.answers.items() if t in targets}


def _stage(found: list[Interface], recorder: Recorder, specs: list[str] | None = None,
           exclude: Sequence[str] = (), **config: Any) -> ArpSweep:
    async def list_interfaces() -> list[Interface]:
        return found

    return ArpSweep(Config(**config), scan=recorder, interfaces=list_interfaces, clock=lambda: T0,
                    targets=parse_targets(specs) if specs else None, exclude=exclude)


async def test_only_on_link_targets_are_arped_and_broadcast_never() -> None:
    recorder = Recorder({int(ipaddress.IPv4Address("10.9.0.5")): Reply(rtt_ms=0.5, mac="02:aa:00:00:00:05")})
    stage = _stage([_ether("eth1", "10.9.0.1/29")], recorder, ["10.9.0.0/28", "192.168.50.1"])
    events = await stage.sweep()
    # Not .0/.7, not our own .1, nothing off-link; covered is exactly what was asked.
    assert recorder.calls == [("eth1", [f"10.9.0.{i}" for i in range(2, 7)])]
    assert isinstance(events[-1], SweepCompleted)
    assert events[-1].covered == ["10.9.0.2/31", "10.9.0.4/31", "10.9.0.6/32"]
    seen = [e for e in events if isinstance(e, HostSeen)]
    assert [(e.ip, e.mac, e.rtt_ms, e.interface) for e in seen] == [
        ("10.9.0.5", "02:aa:00:00:00:05", 0.5, "eth1")]


async def test_default_targets_are_the_attached_subnets_of_up_interfaces() -> None:
    recorder = Recorder({})
    found = [_ether("eth1", "10.9.0.1/30"), _ether("eth2", "10.8.0.1/30", state="down"),
             _ether("wan", "8.8.8.1/30"), _ether("big", "10.0.0.1/8")]
    events = await _stage(found, recorder).sweep()
    assert recorder.calls == [("eth1", ["10.9.0.2"])]
    assert isinstance(events[-1], SweepCompleted) and events[-1].targets == ["10.9.0.0/30"]
    assert events[-1].covered == ["10.9.0.2/32"]


async def test_excluded_addresses_are_not_covered() -> None:
    recorder = Recorder({})
    events = await _stage([_ether("eth1", "10.9.0.1/29")], recorder, exclude=["10.9.0.4"]).sweep()
    assert recorder.calls == [("eth1", ["10.9.0.2", "10.9.0.3", "10.9.0.5", "10.9.0.6"])]
    assert isinstance(events[-1], SweepCompleted)
    assert events[-1].covered == ["10.9.0.2/31", "10.9.0.5/32", "10.9.0.6/32"]


async def test_nothing_asked_covers_nothing() -> None:
    events = await _stage([_ether("eth1", "10.9.0.1/30", state="down")], Recorder({})).sweep()
    assert isinstance(events[-1], SweepCompleted) and events[-1].covered == []


async def test_interface_filter() -> None:
    recorder = Recorder({})
    found = [_ether("eth1", "10.9.0.1/30"), _ether("eth2", "10.8.0.1/30")]
    await _stage(found, recorder, interfaces=["eth2"]).sweep()
    assert [c[0] for c in recorder.calls] == ["eth2"]
