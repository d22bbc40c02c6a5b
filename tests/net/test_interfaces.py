"""Interfaces from /sys and rtnetlink (this machine's own: read-only, no packets)."""

from __future__ import annotations

import ipaddress

import pytest

from lanscope.net.interfaces import (
    attached_private_networks,
    default_target_networks,
    interface_for,
    interfaces,
    local_ip,
)


def test_loopback_is_listed_with_its_addresses() -> None:
    found = {i.name: i for i in interfaces()}
    lo = found["lo"]
    assert lo.link_type == "loopback" and lo.mtu and lo.mac is None
    assert ipaddress.ip_interface("127.0.0.1/8") in lo.addresses


def test_every_address_has_a_prefix_and_mac_form() -> None:
    for interface in interfaces():
        assert interface.index > 0
        if interface.mac:
            assert len(interface.mac) == 17 and interface.mac == interface.mac.lower()
        for address in interface.addresses:
            assert address.network.prefixlen <= address.max_prefixlen


def test_attached_and_default_networks() -> None:
    attached = attached_private_networks()
    assert ipaddress.ip_network("127.0.0.0/8") in attached
    for network in default_target_networks():
        assert network in attached and not network.is_loopback and network.prefixlen >= 16


def test_interface_for_loopback_and_local_ip() -> None:
    match = interface_for(ipaddress.ip_address("127.0.0.2"))
    assert match is not None and match[0].name == "lo"
    ipaddress.ip_address(local_ip())           # an address, whatever the routes
    assert local_ip("127.0.0.1") == "127.0.0.1"


def test_without_drivers_no_ethtool_ioctl_and_the_same_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    from lanscope.net import interfaces as module
    from lanscope.net.scope import _lan_networks

    full = interfaces()

    def no_ioctl(name: str) -> str | None:
        raise AssertionError(f"ethtool ioctl for {name}")

    monkeypatch.setattr(module, "_ethtool_driver", no_ioctl)
    bare = interfaces(drivers=False)
    assert [(i.name, i.state, i.addresses) for i in bare] == [(i.name, i.state, i.addresses) for i in full]
    assert attached_private_networks(bare) == attached_private_networks(full)
    assert _lan_networks() == [n for n in attached_private_networks(full) if not n.is_loopback]
