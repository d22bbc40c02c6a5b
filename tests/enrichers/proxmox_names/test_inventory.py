"""Parsing Proxmox configs and agent answers, and the MAC-then-IP join."""

from __future__ import annotations

import pytest

from enrichers.proxmox_names import (
    GuestIndex,
    agent_addresses,
    agent_enabled,
    build_guest,
    guest_identity,
    lxc_addresses,
    parse_net,
)
from tests.fakes.proxmox import default_guests


@pytest.mark.parametrize(("value", "expected"), [
    ("virtio=BC:24:11:2E:C5:4A,bridge=vmbr0,firewall=1", ("bc:24:11:2e:c5:4a", None)),
    ("virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr1,tag=30,firewall=1", ("aa:bb:cc:dd:ee:ff", None)),
    ("e1000=A6:43:11:00:00:65,bridge=vmbr0,mtu=1500,firewall=1,rate=100", ("a6:43:11:00:00:65", None)),
    ("model=virtio,macaddr=BC:24:11:00:00:01,bridge=vmbr0", ("bc:24:11:00:00:01", None)),
    ("virtio,bridge=vmbr0", (None, None)),                              # no MAC yet
    ("name=eth0,bridge=vmbr0,firewall=1,hwaddr=BC:24:11:80:25:32,ip=dhcp,ip6=dhcp,type=veth",
     ("bc:24:11:80:25:32", None)),
    ("name=eth0,bridge=vmbr0,hwaddr=AA:BB:CC:DD:EE:FF,ip=10.0.0.50/24,gw=10.0.0.1,type=veth",
     ("aa:bb:cc:dd:ee:ff", "10.0.0.50")),
    ("name=eth0,hwaddr=AA:BB:CC:DD:EE:FF,ip=manual", ("aa:bb:cc:dd:ee:ff", None)),
    ("name=eth0,hwaddr=not-a-mac,ip=bogus/99", (None, None)),
])
def test_parse_net(value: str, expected: tuple[str | None, str | None]) -> None:
    assert parse_net(value) == expected


@pytest.mark.parametrize(("value", "enabled"), [
    ("1", True), (1, True), ("0", False), ("enabled=1,fstrim_cloned_disks=1", True),
    ("enabled=0", False), ("1,type=virtio", True), (None, False), ("fstrim_cloned_disks=1", False),
])
def test_agent_enabled(value: object, enabled: bool) -> None:
    assert agent_enabled({"agent": value} if value is not None else {}) is enabled


def test_agent_addresses_skip_loopback_and_link_local() -> None:
    result = {"result": default_guests()[0].agent}
    assert agent_addresses(result) == {
        "00:00:00:00:00:00": [],
        "bc:24:11:2e:c5:4a": ["198.18.0.10"],
        "bc:24:11:2e:c5:4b": [],                 # no ip-addresses key
        "02:42:ac:11:00:01": ["172.17.0.1"],
    }
    assert agent_addresses("garbage") == {} and agent_addresses([{"name": "x"}, 3]) == {}


def test_lxc_addresses_are_cidr() -> None:
    assert lxc_addresses(default_guests()[3].interfaces) == {
        "00:00:00:00:00:00": [], "bc:24:11:80:25:32": ["198.18.0.53", "fd00::35"]}


def test_agent_interfaces_not_in_the_config_are_ignored() -> None:
    web = default_guests()[0]
    guest = build_guest({"vmid": 100, "name": "web-01", "type": "qemu", "node": "pve1",
                         "status": "running"}, web.config,
                        agent_addresses({"result": web.agent}))
    assert guest.macs == ["bc:24:11:2e:c5:4a", "bc:24:11:2e:c5:4b"]
    assert guest.ips == ["198.18.0.10"]          # docker0's 172.17.0.1 is not this host's


def test_identity_fields() -> None:
    guest = guest_identity({"vmid": 100, "name": "web-01", "type": "qemu", "node": "pve1",
                            "status": "running", "tags": "prod;webtier"})
    assert (guest.vm_id, guest.name, guest.vm_type, guest.node, guest.status, guest.tags) == (
        100, "web-01", "qemu", "pve1", "running", ["prod", "webtier"])


def test_mac_beats_ip_and_running_beats_stopped() -> None:
    a = build_guest({"vmid": 1, "name": "a", "type": "lxc", "node": "n", "status": "running"},
                    {"net0": "name=eth0,hwaddr=02:00:00:00:00:01,ip=10.0.0.5/24"}, None)
    b = build_guest({"vmid": 2, "name": "b", "type": "lxc", "node": "n", "status": "stopped"},
                    {"net0": "name=eth0,hwaddr=02:00:00:00:00:02,ip=10.0.0.5/24"}, None)
    index = GuestIndex([a, b])
    assert index.lookup("02:00:00:00:00:02", "10.0.0.5").guest.name == "b"  # type: ignore[union-attr]
    assert index.lookup(None, "10.0.0.5").guest.name == "a"                 # type: ignore[union-attr]
    assert index.lookup("02:00:00:00:00:99", "10.0.0.5").guest.name == "a"  # type: ignore[union-attr]
    assert index.lookup("02:00:00:00:00:99", "10.0.0.6") is None
